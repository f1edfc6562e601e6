#!/usr/bin/env bash
# Split one scoring job over N processes without splitting the files on disk, then merge the outputs in
# input order. Runs as written from anywhere after `make demo`:
#   bash examples/shard.sh            # N=2 processes with xargs -P; the same works with GNU parallel
#                                     # or a Slurm array (--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
set -euo pipefail
cd "$(dirname "$0")"
SE3MOL=${SE3MOL:-se3mol}
command -v "$SE3MOL" >/dev/null || SE3MOL=../.venv/bin/se3mol
N=${N:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Shard I scores records I, I+N, I+2N, ... of the inputs taken together, in the order given; every
# process reads the same files and the index column keeps each record's position in the whole input.
# Each process writes its own file (-o writes a temporary file and renames it when complete). Exit status
# 3 only says that some rows are errors (they are in the file); anything else stops the script.
export SE3MOL out N
seq 0 $((N - 1)) | xargs -P "$N" -I{} sh -c \
  '"$SE3MOL" predict molecules.sdf molecules.xyz molecules.smi --shard {}/"$N" -o "$out/part{}.csv" 2>/dev/null \
   || [ $? -eq 3 ]'

# Merge: one header, then the rows of all shards sorted by the index column (the first; an integer).
merged=${TMPDIR:-/tmp}/se3mol-sharded-scores.csv
{ head -n 1 "$out/part0.csv"; tail -q -n +2 "$out"/part*.csv | sort -t, -k1,1n; } > "$merged"
echo "== $N shards merged into $merged: $(($(wc -l < "$merged") - 1)) rows"
cut -d, -f1,2,6,12 "$merged"  # index, id, status, gap_meV
