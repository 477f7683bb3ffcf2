# cronsun %post: directories; enable and start on install, restart on upgrade.
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/cronsun.conf || true
else
    install -d -m 1770 -o root -g cronsun /var/lib/cronsun
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" = 1 ]; then
        systemctl enable --now cronsun.service || true
    else
        systemctl try-restart cronsun.service || true
    fi
fi
exit 0
