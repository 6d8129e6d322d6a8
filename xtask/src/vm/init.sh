#!/vm/busybox sh
# The guest's init (cargo xtask vm-test): mount what the agent and the tests need, run each
# test binary named in /vm/tests with the arguments in /vm/args, report through markers on the
# console, power off. Lines starting with @@vm-test are read by xtask.
/vm/busybox --install -s /vm/bin
export PATH=/usr/bin:/usr/sbin:/vm/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# /tmp stays on the initramfs (already RAM): a workspace under /tmp (a CI clone) is staged there.
mkdir -p /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
. /vm/env
echo "@@vm-test kernel $(uname -r) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null)"
set --
while IFS= read -r arg; do set -- "$@" "$arg"; done < /vm/args
# Tests this kernel cannot pass by design (xtask's kernel list says why): vmtest.skip=a,b
for word in $(cat /proc/cmdline); do
    case "$word" in
    vmtest.skip=*)
        for t in $(echo "${word#vmtest.skip=}" | tr , ' '); do set -- "$@" --skip "$t"; done ;;
    esac
done
while IFS="	" read -r name bin dir kind; do
    echo "@@vm-test begin $name"
    if [ "$kind" = bench ]; then
        (cd "$dir" && "$bin" --bench < /dev/null 2>&1)
    else
        (cd "$dir" && "$bin" "$@" < /dev/null 2>&1)
    fi
    echo "@@vm-test end $name $?"
done < /vm/tests
echo "@@vm-test done"
sync
poweroff -f
