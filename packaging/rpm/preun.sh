# cronsun %preun: on erase (not upgrade) stop (drains) and disable.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now cronsun.service || true
fi
exit 0
