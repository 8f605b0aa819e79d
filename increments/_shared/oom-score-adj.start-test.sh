# PID 1 of a started pod has oom_score_adj 900, so the kernel's OOM killer takes the pod, not the
# node's kubelet. The start-up script sets it and execs the pod's init, which keeps it; that may
# take a moment after the container starts, so this waits up to 10 s. It travels with the fix:
# `imagectl backport` gives every line the fix reaches a test that includes this file.
i=0
while [ "$(cat /proc/1/oom_score_adj)" != 900 ]; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then
        echo "PID 1 ($(tr '\0' ' ' < /proc/1/cmdline)) has oom_score_adj" \
            "$(cat /proc/1/oom_score_adj), not 900" >&2
        exit 1
    fi
    sleep 0.1
done
echo "PID 1 ($(tr '\0' ' ' < /proc/1/cmdline)) has oom_score_adj 900"
