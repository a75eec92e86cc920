#!/bin/sh
# maillab: install (as root, on Debian) the system tools the mininet backend and
# the real-tool tests use, then check each can do what the project uses it for.
# Capabilities, not package names: a package installed without its recommends
# may lack what we need (swaks without Net::SSLeay cannot do STARTTLS).
#
# Usage: scripts/system-setup.sh [--check]   (--check: verify only, install nothing)
# Exit 0 when every capability is there (or when not root / not Debian: the tests
# that need them skip and say why); 1 with one line per missing capability.
set -u
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH

# Each package is named for what it gives; recommends are left out on purpose
# (mininet recommends Open vSwitch, which would start a system service) and the
# ones we need are listed explicitly instead.
PACKAGES="mininet iptables iproute2 iputils-ping dnsutils tcpdump tmux openssl
swaks libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl libnet-dns-perl
zsh fish
ca-certificates postfix chromium nodejs tshark"
# The real-software nodes (issue 18): private Postfix and Dovecot instances the
# lab configures and starts itself, and the policy services around them.
# dbconfig-no-thanks: OpenDMARC's database question answered "no" without
# pulling a MySQL client in.
# faketime (libfaketime): Postfix and postgrey run on the lab's clock.
MAIL_PACKAGES="dovecot-imapd dovecot-pop3d dovecot-lmtpd opendkim opendmarc dbconfig-no-thanks
postfix-policyd-spf-python postgrey faketime"
PACKAGES="$PACKAGES $MAIL_PACKAGES"

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system: not root or no apt-get: skipping Debian packages (the mininet and real-tool tests will skip and say why)"
  exit 0
fi

if [ "$check_only" = 0 ]; then
  missing=""
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "system: installing Debian packages:$missing"
    apt-get update -qq >/dev/null || { echo "system: apt-get update failed"; exit 1; }
    # Postfix is here only for private instances the lab and the benchmarks
    # start themselves (postfix -c DIR): the system's own mail service is left
    # unconfigured, so installing it starts and changes nothing.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Debian's maintainer scripts start each daemon they install (invoke-rc.d):
    # a policy-rc.d that answers 101 ("action forbidden") for the length of the
    # install keeps the system's Postfix, Dovecot, OpenDKIM, OpenDMARC and
    # postgrey stopped; the lab runs private instances of its own. One that
    # was already there (a container's) is left as it is.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# maillab system-setup: no service starts during the install\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      made_policy=1
      trap 'rm -f "$policy"' EXIT INT TERM
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    rc=$?
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT INT TERM; fi
    [ "$rc" = 0 ] || { echo "system: apt-get install failed for:$missing"; exit 1; }
  fi
  # npm: Debian's package, unless the nodejs already installed brings its own
  # (a nodejs from elsewhere does, and Debian's npm would conflict with it).
  if ! command -v npm >/dev/null 2>&1; then
    echo "system: installing Debian packages: npm"
    apt-get update -qq >/dev/null || { echo "system: apt-get update failed"; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
      || { echo "system: apt-get install failed for: npm"; exit 1; }
  fi
fi

# What each tool must be able to do for the project.
fail=0
need() {  # need "what it is for" command...
  what=$1; shift
  if ! "$@" >/dev/null 2>&1; then echo "system: missing capability: $what"; fail=1; fi
}
has_line() {  # has_line PATTERN command...: the command's output has a line matching PATTERN
  pat=$1; shift
  "$@" 2>&1 | grep -q -- "$pat"
}
need "mnexec (Debian's mininet) to run processes in namespaces" sh -c 'command -v mnexec'
need "iptables for the routers' firewall rules" iptables -V
need "ip (iproute2) for namespaces and links" ip -V
need "ping (iputils-ping)" sh -c 'command -v ping'
need "dig (dnsutils) to query the lab DNS" dig -v
need "tcpdump for captures inside hosts" tcpdump --version
# tshark: Wireshark's dissectors read the pcap files of `send --pcap` in tests. Installed
# non-interactively, wireshark-common's debconf question (non-root capture) stays "no".
need "tshark (Wireshark's dissectors) to read --pcap files" has_line "TShark" tshark -v
need "tmux to drive the TUI in tests" tmux -V
need "zsh and fish, to test the completion scripts" sh -c 'command -v zsh && command -v fish'
need "openssl s_client for TLS experiments" openssl version
need "postfix, for private instances (bench, real-software nodes)" sh -c 'test -x /usr/sbin/postfix && /usr/sbin/postconf -d mail_version'  # 3.4+: maillog_file
# Real-software nodes: each program must run a private configuration (nothing
# of the system's own is read or started).
need "dovecot (dovecot-core) to run a private instance: doveconf -c FILE" \
  sh -c 'd=$(mktemp -d) && printf "ssl = no\\n" >"$d/dovecot.conf" && doveconf -c "$d/dovecot.conf" -n; r=$?; rm -rf "$d"; exit $r'
need "dovecot-imapd for IMAP from Dovecot nodes" test -x /usr/lib/dovecot/imap
need "dovecot-pop3d for POP3 from Dovecot nodes" test -x /usr/lib/dovecot/pop3
need "dovecot-lmtpd for LMTP delivery into Dovecot" test -x /usr/lib/dovecot/lmtp
need "opendkim, the DKIM milter of Postfix nodes" sh -c 'command -v opendkim || test -x /usr/sbin/opendkim'
need "opendmarc, the DMARC milter of Postfix nodes" sh -c 'command -v opendmarc || test -x /usr/sbin/opendmarc'
need "postfix-policyd-spf-python, the SPF policy service of Postfix nodes" test -x /usr/bin/policyd-spf
need "postgrey, the greylisting policy service of Postfix nodes" test -x /usr/sbin/postgrey
# libfaketime must move a program's clock: FAKETIME=+1d puts `date` a day ahead.
need "libfaketime (faketime), to run Postfix and postgrey on lab time" \
  sh -c 'lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1) && test -n "$lib" \
    && test "$(LD_PRELOAD=$lib FAKETIME=+1d date +%s)" -gt "$(( $(date +%s) + 86000 ))"'
need "swaks with TLS (libnet-ssleay-perl, libio-socket-ssl-perl) for STARTTLS and 465" \
  has_line "=== TLS supported" swaks --support
need "chromium, a headless browser for the maillab serve test" chromium --headless --version
need "node and npm for JupyterHub's configurable-http-proxy (the classroom test)" npm --version
exit $fail
