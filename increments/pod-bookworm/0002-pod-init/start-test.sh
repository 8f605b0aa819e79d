# The pod start-up script runs as PID 1, prepares the pod and execs the pod's init (sleep infinity),
# which takes over PID 1: signals reach it and it reaps orphans. Waits up to 10 s for the exec.
test -x /usr/local/bin/pod-start || { echo "no executable /usr/local/bin/pod-start" >&2; exit 1; }
i=0
while [ "$(tr '\0' ' ' < /proc/1/cmdline)" != "sleep infinity " ]; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then
        echo "PID 1 is '$(tr '\0' ' ' < /proc/1/cmdline)', not the pod's init (sleep infinity)" \
            "exec'd by the start-up script" >&2
        exit 1
    fi
    sleep 0.1
done
echo "PID 1 is the pod's init: sleep infinity"
