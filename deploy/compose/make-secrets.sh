#!/bin/sh
# Writes the secret files deploy/compose/compose.yaml mounts, under
# deploy/compose/secrets/ (git-ignored), from the passwords in deploy/compose/.env:
#
#   kafka/       the broker's TLS keystore (PKCS12, signed by a CA made here), its
#                password files, its JAAS file (SASL/PLAIN users: the broker itself,
#                with a random password, and "ccrec" with KAFKA_CLIENT_PASSWORD),
#                ca.crt (what clients trust) and client.properties (Kafka's CLI tools)
#   ca/          the CA's private key (not mounted anywhere; keep it offline)
#   redis-users.acl   Redis ACL: default user off, user ccrec with REDIS_PASSWORD's SHA-256
#
#   sh deploy/compose/make-secrets.sh [ENV_FILE]       (default deploy/compose/.env)
#
# Then add at least one API key (hash and scopes) for the Serve Ingress:
#   ccrec serve keys --name web --scope recommendations:read --scope events:write \
#     --file deploy/compose/secrets/api_keys.yaml
# Needs openssl. Re-running replaces the certificates and the broker's password.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ENV_FILE=${1:-$HERE/.env}
value() {  # the value of KEY in the env file
    sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
}
REDIS_PASSWORD=$(value REDIS_PASSWORD)
KAFKA_CLIENT_PASSWORD=$(value KAFKA_CLIENT_PASSWORD)
for name in REDIS_PASSWORD KAFKA_CLIENT_PASSWORD; do
    eval "set_value=\${$name}"
    case "$set_value" in
        ""|change-me) echo "set $name in $ENV_FILE first" >&2; exit 1 ;;
    esac
done
OUT=$HERE/secrets
mkdir -p "$OUT/kafka" "$OUT/ca"
umask 022

# A CA and the broker's certificate (names: the compose service and localhost).
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=ccrec-compose-ca" \
    -keyout "$OUT/ca/ca.key" -out "$OUT/kafka/ca.crt" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=kafka" \
    -keyout "$OUT/ca/broker.key" -out "$OUT/ca/broker.csr" 2>/dev/null
printf 'subjectAltName=DNS:kafka,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
    > "$OUT/ca/broker.ext"
openssl x509 -req -in "$OUT/ca/broker.csr" -CA "$OUT/kafka/ca.crt" -CAkey "$OUT/ca/ca.key" \
    -CAserial "$OUT/ca/ca.srl" -CAcreateserial -days 825 -extfile "$OUT/ca/broker.ext" -out "$OUT/ca/broker.crt" 2>/dev/null
STORE_PASSWORD=$(openssl rand -hex 24)
openssl pkcs12 -export -in "$OUT/ca/broker.crt" -inkey "$OUT/ca/broker.key" \
    -certfile "$OUT/kafka/ca.crt" -name kafka -passout "pass:$STORE_PASSWORD" \
    -out "$OUT/kafka/kafka.keystore.p12"
printf %s "$STORE_PASSWORD" > "$OUT/kafka/keystore_creds"
rm -f "$OUT/ca/broker.csr" "$OUT/ca/broker.ext"

BROKER_PASSWORD=$(openssl rand -hex 24)
cat > "$OUT/kafka/kafka_server_jaas.conf" <<JAAS
KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="broker" password="$BROKER_PASSWORD"
  user_broker="$BROKER_PASSWORD"
  user_ccrec="$KAFKA_CLIENT_PASSWORD";
};
JAAS
cat > "$OUT/kafka/client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="ccrec" password="$KAFKA_CLIENT_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/secrets/ca.crt
PROPS

DIGEST=$(printf %s "$REDIS_PASSWORD" | openssl dgst -sha256 -r | cut -d' ' -f1)
printf 'user default off\nuser ccrec on #%s ~* &* +@all -@dangerous\n' "$DIGEST" \
    > "$OUT/redis-users.acl"
# The containers read these as their own users (Kafka 1000, Redis 999).
chmod 0644 "$OUT"/kafka/* "$OUT/redis-users.acl"
chmod 0600 "$OUT"/ca/*
echo "wrote $OUT (add an API key: see the top of $0)"
