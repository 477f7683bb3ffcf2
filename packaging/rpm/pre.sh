# cronsun %pre: the agent's user and the admin group.
if command -v systemd-sysusers >/dev/null 2>&1; then
    printf '%s\n' 'g cronsun-admin -' 'u cronsun - "cronsun daemon" /var/lib/cronsun /usr/sbin/nologin' \
        | systemd-sysusers - || true
fi
getent group cronsun-admin >/dev/null || groupadd --system cronsun-admin
getent group cronsun >/dev/null || groupadd --system cronsun
getent passwd cronsun >/dev/null || useradd --system --gid cronsun \
    --home-dir /var/lib/cronsun --no-create-home \
    --shell /usr/sbin/nologin --comment "cronsun daemon" cronsun
exit 0
