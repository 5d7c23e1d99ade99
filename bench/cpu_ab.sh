#!/usr/bin/env bash
# bench/cpu_ab.sh — an interleaved A/B of two (or more) builds with bench/cpu_cost.sh.
#
# Two cpu_cost.sh runs made one after the other drift apart by more than a
# small change costs: on this 2-vCPU VM, shared with compilers, even the
# empty C trigger (none of our code) moved 14–22 % between runs. So here the
# builds take turns, one cpu_cost.sh repetition each: A B, B A, A B, ...
# Each build is installed into its own relocatable copy of PostgreSQL (a
# DESTDIR of /usr, e.g. `make install DESTDIR=/opt/pga`), chosen by putting
# its bin directory first in PATH, so no reinstall happens between turns.
# Every build of a repetition updates the same rows (CPU_REP_FIRST = the
# repetition), and each run pairs its configurations with the baseline of
# the same run, so what is compared is the extra over the baseline.
#
#   CPU_AB ("A=/opt/pglead B=/opt/pgold")
#                            label=prefix per build; prefix/usr/lib/postgresql/15/bin
#                            holds its postgres, pg_config, pgbench
#   CPU_AB_REPS (8)          repetitions (turns per build)
#   CPU_AB_BASE (empty_c)    the baseline of the comparison (must be in CPU_CONFIGS)
#   CPU_AB_NAME (ab)         results in bench/results/<timestamp>-<name>/
#   CPU_WORKLOADS, CPU_CONFIGS, CPU_TXNS, CPU_CLIENTS, CPU_PIN, ...: passed
#                            on to cpu_cost.sh (CPU_REPS, CPU_PERF, CPU_LABEL,
#                            CPU_OUT, CPU_REP_FIRST are set here)
# Output: <label>.csv (the build's runs, merged), results.md with each build's
# tables and `cpu_stats.py --compare` and `--paired` of each build against
# the first, and every run's own directory under runs/. Holds /tmp/cachebust-bench.lock
# from start to end, so no other benchmark runs between the turns.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
lock=/tmp/cachebust-bench.lock
if [ -z "${CPU_AB_LOCKED:-}" ]; then
	if ! flock -n "$lock" true; then echo "== waiting for $lock (another benchmark is running)" >&2; fi
	CPU_AB_LOCKED=1 exec flock "$lock" "$0" "$@"
fi

builds=${CPU_AB:-"A=/opt/pglead B=/opt/pgold"}
reps=${CPU_AB_REPS:-8}
base=${CPU_AB_BASE:-empty_c}
configs=${CPU_CONFIGS:-"none empty_c empty_stmt key key_tag three key_tag_row"}
case " $configs " in *" $base "*) ;; *) echo "CPU_AB_BASE $base is not in CPU_CONFIGS ($configs)" >&2; exit 2 ;; esac

labels=() prefixes=()
for b in $builds; do
	label=${b%%=*} prefix=${b#*=}
	bin=$prefix/usr/lib/postgresql/15/bin
	[ -x "$bin/postgres" ] && [ -x "$bin/pg_config" ] || { echo "$bin has no postgres or pg_config" >&2; exit 1; }
	[ -f "$("$bin/pg_config" --pkglibdir)/cachebust.so" ] || { echo "no cachebust.so in $prefix" >&2; exit 1; }
	labels+=("$label") prefixes+=("$prefix")
done
[ "${#labels[@]}" -ge 2 ] || { echo "CPU_AB names fewer than two builds" >&2; exit 2; }

out="$root/bench/results/$(date -u +%Y%m%d-%H%M%S)-${CPU_AB_NAME:-ab}"
mkdir -p "$out/runs"
start=$(date +%s)
for r in $(seq 1 "$reps"); do
	# The order rotates each repetition: A B, B A, ... for two builds.
	for i in $(seq 0 $((${#labels[@]} - 1))); do
		j=$(( (i + r - 1) % ${#labels[@]} ))
		label=${labels[$j]} prefix=${prefixes[$j]}
		echo "== repetition $r of $reps: $label ($prefix)" >&2
		PATH="$prefix/usr/lib/postgresql/15/bin:$PATH" CPU_COST_LOCKED=1 CPU_REPS=1 CPU_REP_FIRST="$r" CPU_PERF=0 \
			CPU_LABEL="$label" CPU_OUT="$out/runs/$r-$label" bench/cpu_cost.sh >/dev/null
		# A run's header line once, then its rows.
		[ -f "$out/$label.csv" ] || head -1 "$out/runs/$r-$label/raw.csv" >"$out/$label.csv"
		tail -n +2 "$out/runs/$r-$label/raw.csv" >>"$out/$label.csv"
	done
	echo "== repetition $r of $reps done after $(( $(date +%s) - start )) s" >&2
done

repro="env CPU_AB='$builds' CPU_AB_REPS=$reps CPU_AB_BASE=$base CPU_AB_NAME=${CPU_AB_NAME:-ab} CPU_CONFIGS='$configs'"
for v in CPU_WORKLOADS CPU_TXNS CPU_CLIENTS CPU_PIN CPU_WARMUP; do
	[ -z "${!v:-}" ] || repro+=" $v='${!v}'"
done
repro+=" bench/cpu_ab.sh"
{
	echo "# Interleaved A/B of ${labels[*]}, $(date -u +%Y-%m-%d)"
	echo
	echo "Builds (cachebust.so md5, first 12):"
	for i in "${!labels[@]}"; do
		so=$("${prefixes[$i]}/usr/lib/postgresql/15/bin/pg_config" --pkglibdir)/cachebust.so
		echo "- ${labels[$i]}: ${prefixes[$i]}, $(md5sum "$so" | cut -c1-12)"
	done
	echo
	echo "Method: bench/cpu_cost.sh, one repetition per build in turn ($reps turns each, order rotated), every build of a repetition"
	echo "on the same rows; each run's extra over \`$base\` is paired within the run, the builds are compared with Welch intervals."
	echo "Wall time: $(( $(date +%s) - start )) s. Each run's own tables: runs/<repetition>-<label>/results.md."
	echo
	echo "Reproduce: \`$repro\`"
	echo
	for i in $(seq 1 $((${#labels[@]} - 1))); do
		/usr/bin/python3 bench/cpu_stats.py --compare "$out/${labels[0]}.csv" "$out/${labels[$i]}.csv" "$base" | sed "s|$root/||g"
		echo
		/usr/bin/python3 bench/cpu_stats.py --paired "$out/${labels[0]}.csv" "$out/${labels[$i]}.csv" "$base"
		echo
	done
	for label in "${labels[@]}"; do
		echo "## $label"
		echo
		/usr/bin/python3 bench/cpu_stats.py "$out/$label.csv" | sed 's/^### /#### /'
		echo
	done
} >"$out/results.md"
cat "$out/results.md"
echo
echo "== results in $out"
