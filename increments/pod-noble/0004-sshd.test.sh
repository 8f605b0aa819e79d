# sshd's configuration is valid (sshd -t) and refuses passwords, with no host key baked into the
# image (each pod makes its own): checked with a host key made for this test only
fail() { echo "$*" >&2; exit 1; }
for key in /etc/ssh/ssh_host_*_key; do
    [ ! -e "$key" ] || fail "the host key $key is baked into the image"
done
ssh-keygen -q -t ed25519 -N '' -f /tmp/test-host-key || fail "ssh-keygen failed"
/usr/sbin/sshd -t -h /tmp/test-host-key || fail "sshd -t: the configuration is not valid"
/usr/sbin/sshd -T -h /tmp/test-host-key | grep -qx 'passwordauthentication no' \
    || fail "sshd accepts passwords"
