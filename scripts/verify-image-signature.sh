#!/usr/bin/env bash
# Verifies a Rampart image signature with nothing but bash, coreutils (base64, sha256sum, wc, tr, grep,
# sed, mktemp) and openssl — no Rampart code involved, so anyone can check an image independently.
#
#   scripts/verify-image-signature.sh IMAGE ENVELOPE PUBLIC_KEY_PEM
#
# ENVELOPE is what `rampart image sign` writes (a DSSE envelope, JSON); PUBLIC_KEY_PEM the signer's
# Ed25519 public key, obtained over a channel you trust (its key id is printed: compare it). The format
# and the same procedure step by step are in docs/image-signatures.md.
#
# Checks: the payload type is application/vnd.in-toto+json; the signature by this key verifies over
# PAE(payloadType, payload); the payload is a Rampart in-toto statement whose one subject's sha256 is the
# sha256 of IMAGE. Prints "OK sha256:<digest> key <keyid>" and exits 0; prints "FAIL: <reason>" and
# exits 1 otherwise; 2 for a usage or environment error.
set -euo pipefail
export LC_ALL=C

readonly PAYLOAD_TYPE='application/vnd.in-toto+json'
readonly MAX_ENVELOPE_BYTES=65536

usage() {
  echo "usage: $0 IMAGE ENVELOPE PUBLIC_KEY_PEM" >&2
  exit 2
}
fail() {
  echo "FAIL: $1"
  exit 1
}

[[ $# -eq 3 ]] || usage
image=$1
envelope=$2
pub=$3
for file in "$image" "$envelope" "$pub"; do
  [[ -f $file ]] || {
    echo "error: $file not found" >&2
    exit 2
  }
done
for tool in base64 sha256sum openssl mktemp wc tr grep sed; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool is required" >&2
    exit 2
  }
done
if ! openssl pkey -pubin -in "$pub" -noout -text 2>/dev/null | grep '^ED25519 Public-Key' >/dev/null; then
  echo "error: $pub is not an Ed25519 public key (PEM)" >&2
  exit 2
fi
keyid=$(openssl pkey -pubin -in "$pub" -outform DER | sha256sum)
keyid=${keyid%% *}
echo "public key id: $keyid"

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# 1. The envelope: bounded, one line, each field exactly once.
(($(wc -c <"$envelope") <= MAX_ENVELOPE_BYTES)) || fail "envelope is larger than $MAX_ENVELOPE_BYTES bytes"
json=$(tr -d '\n\r' <"$envelope")
field() { # name value-pattern -> the value, only if the field occurs exactly once
  local found
  found=$(grep -oE "\"$1\": *\"$2\"" <<<"$json" || true)
  [[ -n $found && $(grep -c '' <<<"$found") -eq 1 ]] || return 1
  sed -E "s/^\"$1\": *\"(.*)\"$/\1/" <<<"$found"
}
payload_type=$(field payloadType '[^"]*') || fail 'envelope has no single payloadType'
[[ $payload_type == "$PAYLOAD_TYPE" ]] || fail "payloadType is $payload_type, not $PAYLOAD_TYPE"
payload_b64=$(field payload '[A-Za-z0-9+/=]*') || fail 'envelope has no single base64 payload'
pair=$(grep -oE "\"keyid\": *\"$keyid\", *\"sig\": *\"[A-Za-z0-9+/=]*\"" <<<"$json" || true)
[[ -n $pair && $(grep -c '' <<<"$pair") -eq 1 ]] || fail "no single signature by key $keyid"
sig_b64=$(sed -E 's/.*"sig": *"([^"]*)"$/\1/' <<<"$pair")

# 2. Decode, rebuild PAE(type, payload) with byte lengths, and verify the Ed25519 signature over it.
base64 -d <<<"$payload_b64" >"$tmp/payload.bin" 2>/dev/null || fail 'payload is not base64'
base64 -d <<<"$sig_b64" >"$tmp/sig.bin" 2>/dev/null || fail 'signature is not base64'
payload_len=$(wc -c <"$tmp/payload.bin")
printf 'DSSEv1 %d %s %d ' "${#payload_type}" "$payload_type" "$payload_len" >"$tmp/pae.bin"
cat "$tmp/payload.bin" >>"$tmp/pae.bin"
openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$tmp/pae.bin" -sigfile "$tmp/sig.bin" \
  >/dev/null 2>&1 || fail "signature by key $keyid does not verify"

# 3. The statement (Rampart writes it compact, in this key order) names exactly one subject digest...
statement=$(cat "$tmp/payload.bin")
prefix='^\{"_type":"https://in-toto\.io/Statement/v1","subject":\[\{"name":"([^"\\]|\\.)*","digest":\{"sha256":"([0-9a-f]{64})"\}\}\],"predicateType":"https://rampart\.dev/image-signature/v1","predicate":\{'
[[ $statement =~ $prefix ]] || fail 'payload is not a Rampart image statement with exactly one sha256 subject'
signed_digest=${BASH_REMATCH[2]}

# 4. ...which must be the digest of this image.
actual=$(sha256sum <"$image")
actual=${actual%% *}
[[ $signed_digest == "$actual" ]] || fail "the signature is for sha256:$signed_digest, not this image (sha256:$actual)"
echo "OK sha256:$actual key $keyid"
