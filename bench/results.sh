# bench/results.sh: reading results files of `NAME RUN key=value ...` lines
# ($RES), for the bench scripts (sourced; bench/lib.sh sources it too).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
res_get() { awk -v s="$1" -v k="$2" '$1 == s { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$RES" | median; }
res_ratio() {
  awk -v s="$1" -v b="$2" -v k="$3" '
    $1 == s || $1 == b { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v[$1, $2] = kv[2] } }
    END { for (key in v) { split(key, p, SUBSEP); if (p[1] == s && ((b, p[2]) in v) && v[b, p[2]] + 0 > 0) print v[key] / v[b, p[2]] } }' "$RES" |
    median | awk '{ if ($1 == "-") print "-"; else printf "%.2f\n", $1 }'
}
