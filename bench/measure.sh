# bench/measure.sh: the arithmetic bench/run.sh and bench/ab.sh share (sourced, never run; no
# side effects): the machine's CPU time from /proc/stat and the median of a round's figures.

# The machine's CPU time so far in clock ticks (`getconf CLK_TCK` a second), every process on
# every core: "USER SYSTEM" (nice counts as user; irq and softirq as system).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3, $4 + $7 + $8; exit }' /proc/stat; }

# The median of the numbers given ("-" for none).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{ if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2 }'; }
