# bench/cg_split.awk: reads one callgrind output file and prints its self cost
# (instructions, the first event) split by part of the program, for
# bench/callgrind. Output lines:
#   total IR
#   part NAME IR          Lua, lupine core, libev, libc syscall wrappers, ...
#   fn PART|FUNCTION IR   self cost per function
#   calls NAME COUNT      calls into libc's syscall wrappers (the kernel
#                         boundary), from outside those wrappers
#
# The callgrind format: "ob=", "fl=", "fn=" set the object, file and function
# the following cost lines belong to; names are compressed as "(id) name" the
# first time and "(id)" after (fn/cfn share ids, ob/cob, fl/fi/fe/cfi too).
# The cost line after a "calls=" line is the call's inclusive cost, not self
# cost, and is skipped.

function resolve(kind, s,    p, id, name) {
  if (substr(s, 1, 1) != "(") return s
  p = index(s, ")")
  id = substr(s, 2, p - 2)
  name = substr(s, p + 2)
  if (name != "") names[kind, id] = name
  else name = names[kind, id]
  return name
}

function basename(path,    n, a) {
  n = split(path, a, "/")
  return a[n]
}

# glibc's internal aliases and versions: __GI___libc_read@@GLIBC_2.2.5 -> read
function plain(fn) {
  sub(/@.*/, "", fn)
  sub(/^__GI_/, "", fn)
  sub(/^__libc_/, "", fn)
  sub(/^__/, "", fn)
  sub(/^libc_/, "", fn)
  sub(/_nocancel$/, "", fn)
  return fn
}

function part(ob, fl, fn,    b) {
  b = basename(ob)
  if (b == "ref_echo") return "reference server (ref_echo)"
  if (b ~ /^lua5\.4$/ || b ~ /^liblua/) return "Lua (lua5.4, liblua)"
  if (b == "core.so" || b == "lupine") {
    if (fl ~ /\/src\/lua\// || fl ~ /^src\/lua\// || fl ~ /main\.c$/) return "lupine binding (src/lua)"
    return "lupine core (src)"
  }
  if (b ~ /^libev/) return "libev"
  if (b ~ /^libc[.-]/) return (plain(fn) in wrappers) ? "libc syscall wrappers" : "libc other"
  if (b ~ /^ld-linux/) return "other (ld.so, valgrind)"
  return "other (ld.so, valgrind)"
}

BEGIN {
  n = split("read write readv writev recv send recvfrom sendto recvmsg sendmsg recvmmsg sendmmsg " \
            "epoll_wait epoll_pwait epoll_pwait2 epoll_ctl accept accept4 connect close shutdown poll ppoll " \
            "select pselect setsockopt getsockopt fcntl fcntl64 ioctl eventfd_read eventfd_write pipe pipe2 " \
            "futex syscall nanosleep clock_nanosleep", w, " ")
  for (i = 1; i <= n; i++) wrappers[w[i]] = 1
  npos = 1
  skip = 0
}

/^positions:/ { npos = NF - 1; next }
/^ob=/ { ob = resolve("ob", substr($0, 4)); next }
/^fl=/ { fl = resolve("fl", substr($0, 4)); next }
/^(fi|fe)=/ { resolve("fl", substr($0, 4)); next }
/^fn=/ { fn = resolve("fn", substr($0, 4)); cur = part(ob, fl, fn); next }
/^cob=/ { cob = resolve("ob", substr($0, 5)); next }
/^(cfi|cfl)=/ { resolve("fl", substr($0, 5)); next }
/^cfn=/ { cfn = resolve("fn", substr($0, 5)); next }
/^calls=/ {
  split(substr($0, 7), c, " ")
  callee_ob = cob != "" ? cob : ob
  if (basename(callee_ob) ~ /^libc[.-]/ && (plain(cfn) in wrappers) && !(basename(ob) ~ /^libc[.-]/ && (plain(fn) in wrappers)))
    calls[plain(cfn)] += c[1]
  cob = ""
  skip = 1
  next
}
/^[0-9+*-]/ {
  if (skip) { skip = 0; next }
  ir = $(npos + 1) + 0
  total += ir
  parts[cur] += ir
  fns[cur "|" fn] += ir
  next
}

END {
  printf "total %d\n", total
  for (p in parts) printf "part %s %d\n", p, parts[p]
  for (f in fns) if (fns[f] > 0) printf "fn %s %d\n", f, fns[f]
  for (k in calls) printf "calls %s %d\n", k, calls[k]
}
