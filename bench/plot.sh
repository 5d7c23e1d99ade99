#!/usr/bin/env bash
# Plots a benchmark run's write-path ratios (bench/run.sh calls it; it can be
# run again on a recorded run): one PNG per synchronous_commit mode and
# workload in DIR, from DIR/write_path.csv, a bar per configuration and
# client count, with the 1.0 line of the run's own no-trigger baseline.
#   bench/plot.sh DIR
set -euo pipefail
dir=$1
csv="$dir/write_path.csv"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Values in the order they first appear in column $1 of the CSV.
column_values() { awk -F, -v col="$1" 'NR > 1 && !seen[$col]++ { print $col }' "$csv"; }
clients_list=$(column_values 3 | tr '\n' ' ')
configs=$(column_values 4)
cols=$(echo $clients_list | wc -w)

for sync in $(column_values 1); do
	for w in $(column_values 2); do
		data="$tmp/$sync-$w.dat"
		for c in $configs; do
			printf '%s' "$c"
			for n in $clients_list; do
				awk -F, -v s="$sync" -v w="$w" -v n="$n" -v c="$c" \
					'$1 == s && $2 == w && $3 == n && $4 == c { printf " %s", $8 }' "$csv"
			done
			echo
		done >"$data"
		top=$(awk '{ for (i = 2; i <= NF; i++) if ($i > m) m = $i } END { print (m > 1.2 ? m + 0.1 : 1.2) }' "$data")
		gnuplot <<GP
set terminal pngcairo size 1100,500
set termoption noenhanced
set output "$dir/$w-sync-$sync.png"
set title "$w, synchronous_commit = $sync: TPS / baseline TPS (same run)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:$top]
set ytics 0.1
set grid ytics
set key outside bottom center horizontal
plot for [i=2:$((cols + 1))] "$data" using i:xtic(1) title sprintf("%s client(s)", word("$clients_list", i - 1)), \
	1 with lines dashtype 2 linecolor rgb "black" notitle
GP
	done
done
