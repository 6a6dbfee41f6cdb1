#!/usr/bin/env bash
# Verifies a Rampart audit export offline, with nothing but bash, coreutils (sha256sum, base64, mktemp)
# and openssl — no Rampart code involved, so a third party can check the log independently.
#
#   scripts/verify-audit-export.sh DIR [PUBLIC_KEY_PEM]
#
# DIR holds what `rampart audit export DIR` writes: records.jsonl, checkpoints.jsonl and
# audit-public-key.pem (used unless PUBLIC_KEY_PEM is given; compare its fingerprint, printed below,
# with one obtained over a channel you trust). The format and the manual procedure are described in
# docs/audit-verification.md.
#
# Checks: line N of records.jsonl starts with {"prev":"<sha256 of line N-1, exact bytes without the
# newline>","seq":N, (line 1: 64 zeros); each checkpoint's message matches its fields, its Ed25519
# signature verifies, and its head equals the hash of line `count`. The first bad record or checkpoint
# is printed and the exit code is 1; 0 and "OK <n> records, <k> checkpoints, head <hash>" otherwise;
# 2 for a usage or environment error.
set -euo pipefail
export LC_ALL=C

readonly GENESIS=0000000000000000000000000000000000000000000000000000000000000000
readonly CHUNK=1000

usage() {
  echo "usage: $0 DIR [PUBLIC_KEY_PEM]" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
dir=$1
records=$dir/records.jsonl
checkpoints=$dir/checkpoints.jsonl
pub=${2:-$dir/audit-public-key.pem}
for file in "$records" "$checkpoints" "$pub"; do
  [[ -f $file ]] || {
    echo "error: $file not found" >&2
    exit 2
  }
done
for tool in sha256sum base64 openssl mktemp; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool is required" >&2
    exit 2
  }
done
if ! openssl pkey -pubin -in "$pub" -noout -text 2>/dev/null | grep '^ED25519 Public-Key' >/dev/null; then
  echo "error: $pub is not an Ed25519 public key (PEM)" >&2
  exit 2
fi
fingerprint=$(openssl pkey -pubin -in "$pub" -outform DER | sha256sum)
echo "public key sha256:${fingerprint%% *}"

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
mkdir "$tmp/lines"

fail() { # kind index reason (the reason starts with "record N" or "checkpoint K")
  echo "FAIL: $3"
  exit 1
}

# ------------------------------------------------------------------ checkpoints (read up front)

cp_count=() cp_head=() cp_time=() cp_sig=() cp_bad=()
cp_re='^\{"count":(0|[1-9][0-9]{0,15}),"head":"([0-9a-f]{64})","time":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)","message":"([^"\\]*)","signature":"([A-Za-z0-9+/]*={0,2})"\}$'
total_cps=0
while IFS= read -r line || [[ -n $line ]]; do
  total_cps=$((total_cps + 1))
  if [[ $line =~ $cp_re ]]; then
    cp_count[total_cps]=${BASH_REMATCH[1]}
    cp_head[total_cps]=${BASH_REMATCH[2]}
    cp_time[total_cps]=${BASH_REMATCH[3]}
    cp_sig[total_cps]=${BASH_REMATCH[5]}
    expected_msg="rampart-audit-checkpoint v1 count=${BASH_REMATCH[1]} head=${BASH_REMATCH[2]} time=${BASH_REMATCH[3]}"
    [[ ${BASH_REMATCH[4]} == "$expected_msg" ]] ||
      cp_bad[total_cps]="checkpoint $total_cps: message does not match its count, head and time"
  else
    cp_bad[total_cps]="checkpoint $total_cps: malformed"
  fi
done <"$checkpoints"

# ------------------------------------------------------------------ the walk

n=0              # records verified
head=$GENESIS    # hash of record n
signed=-1        # records covered by the last verified checkpoint
next_cp=1        # the next checkpoint to verify

verify_checkpoint() { # k
  local k=$1 count=$((10#${cp_count[$1]}))
  if ((count < signed)); then
    fail checkpoint "$k" "checkpoint $k: covers $count records, fewer than the $signed of checkpoint $((k - 1))"
  fi
  if ((count > n)); then
    local from=$((n + 1)) what
    if ((from == count)); then what="record $from"; else what="records $from..$count"; fi
    fail record "$from" "$what missing (checkpoint $k covers $count)"
  fi
  ((count == n)) || fail checkpoint "$k" "checkpoint $k: out of order (covers $count records)"
  printf '%s' "rampart-audit-checkpoint v1 count=${cp_count[k]} head=${cp_head[k]} time=${cp_time[k]}" >"$tmp/msg"
  if ! printf '%s' "${cp_sig[k]}" | base64 -d >"$tmp/sig" 2>/dev/null ||
    ! openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$tmp/msg" -sigfile "$tmp/sig" >/dev/null 2>&1; then
    fail checkpoint "$k" "checkpoint $k: signature does not verify"
  fi
  [[ ${cp_head[k]} == "$head" ]] ||
    fail checkpoint "$k" "checkpoint $k: head does not match the hash of record $count"
  signed=$count
}

# Verifies the checkpoints due after the records verified so far (all of them when $1 is "final").
check_due() {
  while ((next_cp <= total_cps)); do
    [[ -z ${cp_bad[next_cp]:-} ]] || fail checkpoint "$next_cp" "${cp_bad[next_cp]}"
    if [[ $1 != final ]] && ((10#${cp_count[next_cp]} > n)); then return 0; fi
    verify_checkpoint "$next_cp"
    next_cp=$((next_cp + 1))
  done
}

seq_re='^\{"prev":"([0-9a-f]{64})","seq":(0|[1-9][0-9]{0,15}),'

# The chunk's lines are written to files (printf is a builtin: no process per line) and hashed by one
# sha256sum per chunk; then they are walked in order.
chunk=()
walk_chunk() {
  local count=${#chunk[@]} i names=() sums=()
  ((count > 0)) || return 0
  for ((i = 0; i < count; i++)); do
    printf '%s' "${chunk[i]}" >"$tmp/lines/$i"
    names+=("$i")
  done
  mapfile -t sums < <(cd "$tmp/lines" && sha256sum -- "${names[@]}")
  ((${#sums[@]} == count)) || {
    echo "error: sha256sum failed" >&2
    exit 2
  }
  for ((i = 0; i < count; i++)); do
    local line=${chunk[i]} expected=$((n + 1))
    if [[ $line == "{\"prev\":\"$head\",\"seq\":$expected,"* ]]; then
      head=${sums[i]%% *}
      n=$expected
      check_due partial
      continue
    fi
    # Why it does not link up:
    [[ $line =~ $seq_re ]] || fail record "$expected" "record $expected: malformed line"
    local seq=$((10#${BASH_REMATCH[2]}))
    if ((seq > expected)); then
      if ((seq - 1 == expected)); then
        fail record "$expected" "record $expected missing (next is $seq)"
      fi
      fail record "$expected" "records $expected..$((seq - 1)) missing (next is $seq)"
    fi
    ((seq == expected)) || fail record "$expected" "record $expected: out of order (found seq $seq)"
    # Record n+1 carries a prev that is not the hash of record n: record n was altered, unless a
    # verified checkpoint covers exactly n (then record n+1 was).
    if ((n > 0 && signed != n)); then
      fail record "$n" "record $n: altered (its hash differs from the prev hash that record $expected carries)"
    fi
    if ((n == 0)); then what='the genesis'; else what="record $n"; fi
    fail record "$expected" "record $expected: prev hash does not match the hash of $what"
  done
  chunk=()
}

check_due partial
while IFS= read -r line || [[ -n $line ]]; do
  chunk+=("$line")
  ((${#chunk[@]} < CHUNK)) || walk_chunk
done <"$records"
walk_chunk
check_due final

if ((n > 0 && signed < n)); then
  echo "note: records $((signed < 0 ? 1 : signed + 1))..$n come after the last checkpoint: chained but not signed" >&2
fi
echo "OK $n records, $total_cps checkpoints, head $head"
