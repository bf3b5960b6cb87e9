# bench/measure.sh: the arithmetic bench/run.sh and bench/ab.sh share (sourced, never run; no
# side effects): the machine's CPU time from /proc/stat, a round's CPU a request, the median.

# The machine's CPU time so far in clock ticks (`getconf CLK_TCK` a second), every process on
# every core: "USER SYSTEM" (nice counts as user; irq and softirq as system).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3, $4 + $7 + $8; exit }' /proc/stat; }

# Microseconds of CPU a request: ticks used over a wrk round of RPS req/s for DUR s.
cpu_us_per_request() { # TICKS RPS DUR
  awk -v t="$1" -v r="$2" -v d="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{ if (r > 0) printf "%.1f", t / hz * 1e6 / (r * d); else print "-" }'
}

# The median of the numbers given ("-" for none).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{ if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2 }'; }
