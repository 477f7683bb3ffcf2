# cronsun %postun: RPM has no purge: erase keeps /var/lib/cronsun (jobs, run
# history, admin token) and the user, as the .deb's remove does; delete them
# by hand (rm -rf /var/lib/cronsun; userdel cronsun; groupdel cronsun-admin).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
