#!/usr/bin/env bash
# Make what deploy/mosquitto/kws.conf needs: a private CA, the broker's TLS certificate,
# one account per client (password file for the broker, one password file per client),
# and a client certificate per account for brokers that take certificates instead.
#
#   deploy/mosquitto/make-secrets.sh DIR HOST [USER ...]
#
# HOST is the name (or IP address) clients put in --broker mqtts://HOST:8883; the
# certificate names it, localhost and 127.0.0.1. USER defaults to the cooperative client
# and the four ensemble members: kws-coop ensemble_1 ensemble_2 ensemble_3 ensemble_4.
# It writes:
#   DIR/ca/ca.key                    the CA's private key: keep it off the broker and the clients
#   DIR/broker/                      copy to /etc/mosquitto/kws/ (see kws.conf):
#       ca.crt server.crt server.key passwords (hashed by mosquitto_passwd)
#       acl (deploy/mosquitto/acl, and a block per account but kws-coop: read the clips)
#   DIR/clients/ca.crt               every client's --cafile
#   DIR/clients/USER.password        USER's --password-file (mode 600; give it to that client only)
#   DIR/clients/USER.crt USER.key    USER's --certfile/--keyfile (common name USER)
# Run it again with more users to add accounts: the CA, the broker's certificate and existing
# passwords are kept, and the broker's password file and ACL are rebuilt from DIR/clients/*.password.
# The account kws-coop is the cooperative client's (deploy/mosquitto/acl names it); every other
# account is an inference client's and answers under its own name.
# Needs openssl and mosquitto_passwd (Debian package mosquitto).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR HOST [USER ...]" >&2
    exit 2
fi
dir=$1
host=$2
shift 2
users=("$@")
[ ${#users[@]} -gt 0 ] || users=(kws-coop ensemble_1 ensemble_2 ensemble_3 ensemble_4)
here=$(cd "$(dirname "$0")" && pwd)
days=825

for user in "${users[@]}"; do
    if ! [[ $user =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ ]]; then
        echo "$0: user name '$user' must be 1-128 characters of A-Z a-z 0-9 . _ - (it is a topic level)" >&2
        exit 2
    fi
done
for tool in openssl mosquitto_passwd; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 2; }
done

umask 077
mkdir -p "$dir/ca" "$dir/broker" "$dir/clients"

new_key() {  # an EC P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

sign() {  # sign() CSR CERT EXTENSIONS: a certificate from the CA
    openssl x509 -req -in "$1" -CA "$dir/ca/ca.crt" -CAkey "$dir/ca/ca.key" -CAcreateserial \
        -days "$days" -out "$2" -extfile <(printf '%s\n' "$3") 2>/dev/null
    rm -f "$1"
}

if [ ! -f "$dir/ca/ca.key" ]; then
    new_key "$dir/ca/ca.key"
    openssl req -x509 -new -key "$dir/ca/ca.key" -subj "/CN=kws MQTT CA" -days 3650 -out "$dir/ca/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

if [ ! -f "$dir/broker/server.key" ]; then
    san="DNS:localhost,IP:127.0.0.1"
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
        [ "$host" = 127.0.0.1 ] || san="IP:$host,$san"
    elif [ "$host" != localhost ]; then
        san="DNS:$host,$san"
    fi
    new_key "$dir/broker/server.key"
    openssl req -new -key "$dir/broker/server.key" -subj "/CN=$host" -out "$dir/broker/server.csr"
    sign "$dir/broker/server.csr" "$dir/broker/server.crt" \
        "subjectAltName=$san
extendedKeyUsage=serverAuth"
fi

for user in "${users[@]}"; do
    if [ ! -f "$dir/clients/$user.password" ]; then
        openssl rand -base64 24 > "$dir/clients/$user.password"
    fi
    if [ ! -f "$dir/clients/$user.key" ]; then
        new_key "$dir/clients/$user.key"
        openssl req -new -key "$dir/clients/$user.key" -subj "/CN=$user" -out "$dir/clients/$user.csr"
        sign "$dir/clients/$user.csr" "$dir/clients/$user.crt" "extendedKeyUsage=clientAuth"
    fi
done

# The broker's password file: every account in clients/, hashed in place by mosquitto_passwd -U
# (the passwords never appear on a command line).
passwords="$dir/broker/passwords"
: > "$passwords"
for file in "$dir"/clients/*.password; do
    printf '%s:%s\n' "$(basename "$file" .password)" "$(head -n 1 "$file")" >> "$passwords"
done
mosquitto_passwd -U "$passwords"

# The ACL: deploy/mosquitto/acl, then read access to clips for every account but the cooperative client's.
cp "$here/acl" "$dir/broker/acl"
for file in "$dir"/clients/*.password; do
    user=$(basename "$file" .password)
    [ "$user" = kws-coop ] || printf '\nuser %s\ntopic read kws/audio/+\ntopic read kws/config\n' "$user" >> "$dir/broker/acl"
done

cp "$dir/ca/ca.crt" "$dir/broker/ca.crt"
cp "$dir/ca/ca.crt" "$dir/clients/ca.crt"
chmod 644 "$dir/broker/ca.crt" "$dir/clients/ca.crt" "$dir/broker/acl" "$dir/broker/server.crt" "$dir"/clients/*.crt
echo "made $dir/broker (for /etc/mosquitto/kws) and $dir/clients for: $(basename -a -s .password "$dir"/clients/*.password | tr '\n' ' ')"
