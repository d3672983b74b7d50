# bench/results.sh: the medians and ratios of the side-by-side scripts
# (lines.sh, ws.sh, udp.sh). Sourced; RES is the results file, one run per
# line: `SERVER RUN key=value key=value ...`.

# median: of the numbers on stdin, one a line ("-" when none).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# get SERVER KEY: the median over runs of SERVER's figure KEY.
get() { awk -v s="$1" -v k="$2" '$1 == s { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$RES" | median; }
# ratio SERVER BASE KEY: the median over runs of SERVER's figure divided by BASE's in the same run.
ratio() {
  awk -v s="$1" -v b="$2" -v k="$3" '
    $1 == s || $1 == b { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v[$1, $2] = kv[2] } }
    END { for (key in v) { split(key, p, SUBSEP); if (p[1] == s && ((b, p[2]) in v) && v[b, p[2]] + 0 > 0) print v[key] / v[b, p[2]] } }' "$RES" |
    median | awk '{ if ($1 == "-") print "-"; else printf "%.2f\n", $1 }'
}
