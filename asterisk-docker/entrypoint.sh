#!/bin/sh
# Render the Asterisk .conf files that carry secrets, then run Asterisk in the foreground.
#
# Asterisk's .conf files do not expand environment variables, so ari.conf, pjsip.conf and
# websocket_client.conf are kept as templates in $TEMPLATES and written to /etc/asterisk at every start
# from these variables:
#   ARI_PASSWORD          password of the ARI user `ivr` (compose: IVR_ARI_PASSWORD from .env)
#   PERCALL_PASSWORD      what the per-call ARI connections send the ivr replicas (IVR_ARI_PERCALL_PASSWORD)
#   SIP_6001_PASSWORD     password of softphone account 6001
#   SIP_6002_PASSWORD     password of softphone account 6002
#   SIP_EXTERNAL_ADDRESS  address the phones use to reach the published SIP/RTP ports (default 127.0.0.1)
# Any arguments are passed to asterisk (e.g. -vvvvv for more verbose logs).
set -eu

TEMPLATES=/usr/local/share/ivr-asterisk/templates
CONF_DIR=/etc/asterisk

fail() {
    echo "ivr-asterisk entrypoint: $*" >&2
    exit 64
}

# A secret must be set, not the .env.example placeholder, long enough, and made only of characters that
# survive an Asterisk .conf line (";" starts a comment there, and spaces at either end are trimmed).
check_secret() {
    name=$1
    eval "value=\${$name-}"
    [ -n "$value" ] || fail "$name is not set (copy .env.example to .env and fill it in)"
    case $value in
        change-me*) fail "$name still has the placeholder value from .env.example" ;;
        *[!A-Za-z0-9._~@%+=-]*) fail "$name may only contain letters, digits and . _ ~ @ % + = -" ;;
    esac
    [ "${#value}" -ge 12 ] || fail "$name must be at least 12 characters (try: openssl rand -hex 16)"
}

check_secret ARI_PASSWORD
check_secret PERCALL_PASSWORD
check_secret SIP_6001_PASSWORD
check_secret SIP_6002_PASSWORD

SIP_EXTERNAL_ADDRESS=${SIP_EXTERNAL_ADDRESS:-127.0.0.1}
case $SIP_EXTERNAL_ADDRESS in
    *[!A-Za-z0-9.:-]*) fail "SIP_EXTERNAL_ADDRESS must be an IP address or host name, not '$SIP_EXTERNAL_ADDRESS'" ;;
esac
export ARI_PASSWORD PERCALL_PASSWORD SIP_6001_PASSWORD SIP_6002_PASSWORD SIP_EXTERNAL_ADDRESS

render() {
    # Only the named variables are substituted; the rendered file is readable by this user only.
    src=$TEMPLATES/$1
    dst=$CONF_DIR/$1
    tmp=$dst.tmp
    (umask 077 && envsubst "$2" <"$src" >"$tmp")
    if grep -n '\${' "$tmp" >&2; then
        rm -f "$tmp"
        fail "$src: placeholders left unrendered (listed above)"
    fi
    mv "$tmp" "$dst"
}

render ari.conf '${ARI_PASSWORD}'
render websocket_client.conf '${PERCALL_PASSWORD}'
render pjsip.conf '${SIP_6001_PASSWORD} ${SIP_6002_PASSWORD} ${SIP_EXTERNAL_ADDRESS}'

# The passwords are in the files now; Asterisk itself does not need them in its environment.
unset ARI_PASSWORD PERCALL_PASSWORD SIP_6001_PASSWORD SIP_6002_PASSWORD

exec /usr/sbin/asterisk -f "$@"
