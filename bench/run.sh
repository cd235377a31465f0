#!/bin/bash
# bench/run.sh: the issue 6 benchmark, ours against stock, in one command.
#
#   bash bench/run.sh                    full run (1 GiB, 2,000 files, 3 runs)
#   BENCH_QUICK=1 bash bench/run.sh      smoke test (128 MiB, 300 files)
#
# Cases (see bench/README for every knob and what each column means):
#   a  one big file over `sftp -D SERVER`         (no ssh, no crypto)
#   b  many 4 KiB files over `sftp -D SERVER`      (one session, put -r)
#   c  one big file through a real sshd, Subsystem sftp = SERVER
#   d  one big file with `scp -O` through that sshd, remote scp = ours/stock
#   e  one big file with libssh2's pipelined writes through that sshd
#   flat  peak RSS of ours for one session of 100 vs 10,000 small files
# Each server runs under bench/rusage-wrap, so CPU and peak RSS are the
# server process's own.  Runs are interleaved (stock, ours none, data, full,
# floor; then the reverse) and summarised by their medians.
set -u

bench_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_SRC=${SRC:-$(cd "$bench_src/.." && pwd)}
TOP_OBJ=${OBJ:-$TOP_SRC}

say() { echo "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------- settings
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	SIZE_MB=${BENCH_SIZE_MB:-128}
	FILES=${BENCH_FILES:-300}
else
	SIZE_MB=${BENCH_SIZE_MB:-1024}
	FILES=${BENCH_FILES:-2000}
fi
RUNS=${BENCH_RUNS:-3}
FILE_BYTES=${BENCH_FILE_BYTES:-4096}
FLAT_FEW=${BENCH_FLAT_FEW:-100}
FLAT_MANY=${BENCH_FLAT_MANY:-10000}
CASES=${BENCH_CASES:-a b c d e flat}
LEVELS=${BENCH_LEVELS:-none data full}
OURS_SFTP=${BENCH_OURS_SFTP_SERVER:-$TOP_OBJ/sftp-server}
OURS_SCP=${BENCH_OURS_SCP:-$TOP_OBJ/scp}
OURS_ARGS=${BENCH_OURS_ARGS:-}
STOCK_SFTP=${BENCH_STOCK_SFTP_SERVER:-/usr/lib/openssh/sftp-server}
STOCK_SCP=${BENCH_STOCK_SCP:-/usr/bin/scp}
BENCH_DIR=${BENCH_DIR:-$TOP_OBJ/regress/work/bench}
REMOTE_USER=${BENCH_REMOTE_USER:-autest}
SCP_CLIENT=/usr/bin/scp
# After each sync: the pages freed by the previous run are handed back to
# the host (virtio free page reporting) for a second or two; a run that
# starts meanwhile competes with that and is up to twice as slow.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	SETTLE=${BENCH_SETTLE:-1}
else
	SETTLE=${BENCH_SETTLE:-3}
fi
RSS_LIMIT_KB=8192
# "Flat": at most this much more peak RSS for FLAT_MANY files than for
# FLAT_FEW (512 KiB over 10,000 files is about 50 bytes kept per file;
# stock itself moves by up to ~200 KiB between two such sessions).
RSS_FLAT_KB=512

for n in SIZE_MB FILES RUNS FILE_BYTES FLAT_FEW FLAT_MANY; do
	case ${!n} in
	''|*[!0-9]*|0) die "$n must be a positive whole number (got '${!n}')" ;;
	esac
done
case $BENCH_DIR in
/*) ;;
*) BENCH_DIR=$PWD/$BENCH_DIR ;;
esac
# Paths end up in sftp batch files, `sftp -D` command lines and shims:
# keep them plain.
for n in BENCH_DIR OURS_SFTP OURS_SCP STOCK_SFTP STOCK_SCP TOP_OBJ; do
	case ${!n} in
	*[!A-Za-z0-9_./+-]*) die "$n must be a plain path (no spaces or quotes): ${!n}" ;;
	esac
done
for l in $LEVELS; do
	case $l in none|data|full) ;; *) die "BENCH_LEVELS: unknown level $l" ;; esac
done

has_case() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
same_file() { [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ]; }

# ---------------------------------------------------------------- helpers
RW=$TOP_OBJ/bench/rusage-wrap
FLOOR=$TOP_OBJ/bench/floor
L2PUT=$TOP_OBJ/bench/libssh2_put

# Build a helper when it is missing or older than its source (make bench
# builds them with the project's warning flags first).
build_helper() {
	local name=$1 libs=${2:-} src bin
	src=$TOP_SRC/bench/$name.c
	bin=$TOP_OBJ/bench/$name
	if [ -x "$bin" ] && [ ! "$src" -nt "$bin" ]; then
		return 0
	fi
	mkdir -p "$TOP_OBJ/bench"
	${CC:-cc} -O2 -Wall -DHAVE_CONFIG_H -I"$TOP_OBJ" -I"$TOP_SRC" \
	    -o "$bin" "$src" $libs
}
# From a fresh clone (root, Debian): the packages, then the project in
# tree.  An existing build is brought up to date; one given through
# BENCH_OURS_* is used as it is.
if [ -z "${BENCH_OURS_SFTP_SERVER:-}${BENCH_OURS_SCP:-}" ]; then
	if [ "$(id -u)" -eq 0 ] && [ -x "$TOP_SRC/contrib/install-deps.sh" ]; then
		"$TOP_SRC/contrib/install-deps.sh" >&2 ||
		    die "contrib/install-deps.sh failed"
	fi
	if [ ! -f "$TOP_OBJ/Makefile" ]; then
		[ "$TOP_OBJ" = "$TOP_SRC" ] ||
		    die "no Makefile in $TOP_OBJ: configure it first"
		say "# bench: building in $TOP_SRC (autoreconf, configure, make)"
		( cd "$TOP_SRC" &&
		    { [ -x configure ] || autoreconf -fi; } &&
		    ./configure ) > "${TMPDIR:-/tmp}/bench-configure.$$.log" 2>&1 ||
		    die "configure failed: see ${TMPDIR:-/tmp}/bench-configure.$$.log"
		rm -f "${TMPDIR:-/tmp}/bench-configure.$$.log"
	fi
	make -s -C "$TOP_OBJ" -j"$(nproc)" all >&2 || die "make failed"
fi
build_helper rusage-wrap || die "cannot build bench/rusage-wrap"
build_helper floor || die "cannot build bench/floor"
HAVE_L2PUT=1
if ! build_helper libssh2_put -lssh2 2>/dev/null; then
	HAVE_L2PUT=0
fi

for p in sftp ssh dd cmp diff split; do
	command -v "$p" >/dev/null || die "$p is not installed"
done
[ -x "$STOCK_SFTP" ] || die "stock sftp-server not found at $STOCK_SFTP"
[ -x "$OURS_SFTP" ] || die "our sftp-server is not built ($OURS_SFTP): cd $TOP_OBJ && make sftp-server (or set BENCH_OURS_SFTP_SERVER)"

# Stock accepts no durability flag: when "ours" is the stock binary (a
# stock-vs-stock calibration run) the level is not passed.
OURS_IS_STOCK=0
same_file "$OURS_SFTP" "$STOCK_SFTP" && OURS_IS_STOCK=1

SKIP_SSHD=""
if [ "$(id -u)" -ne 0 ]; then
	SKIP_SSHD="needs root (a throwaway sshd)"
elif ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
	SKIP_SSHD="sshd not installed"
fi

# ---------------------------------------------------------------- disk
parent=$BENCH_DIR
while [ ! -d "$parent" ]; do parent=$(dirname "$parent"); done
avail_kb=$(df -Pk "$parent" | awk 'NR == 2 { print $4 }')
small_kb=$(( (FILES + FLAT_FEW + FLAT_MANY) * (FILE_BYTES + 4096) * 2 / 1024 ))
need_kb=$(( 3 * SIZE_MB * 1024 + small_kb ))
if [ "$avail_kb" -lt "$need_kb" ]; then
	echo "bench: not enough free space under $parent:" \
	    "$((avail_kb / 1024)) MiB free, $((need_kb / 1024)) MiB needed" \
	    "(3 x ${SIZE_MB} MiB plus the small files)." >&2
	echo "bench: free some space, set BENCH_DIR to a roomier filesystem" \
	    "or a smaller BENCH_SIZE_MB; nothing was written." >&2
	exit 1
fi

# ---------------------------------------------------------------- setup
# Everything goes under RUN_ROOT, a directory of this run's own inside
# BENCH_DIR, removed at the end.  It is also test-lib's OBJ: start_sshd puts
# $OBJ/regress/work/bin first on the sessions' PATH, and a private one keeps
# our scp shim from shadowing that of a test running in the shared tree.
made_bench_dir=0
if [ ! -d "$BENCH_DIR" ]; then
	mkdir -p "$BENCH_DIR" || die "cannot create $BENCH_DIR"
	made_bench_dir=1
fi
RUN_ROOT=$BENCH_DIR/run.$$
mkdir "$RUN_ROOT" || die "cannot create $RUN_ROOT"
SHIM_DIR=$RUN_ROOT/regress/work/bin
SUBSYS_SHIM=$SHIM_DIR/sftp-subsys
tid=bench
OBJ=$RUN_ROOT
SRC=$TOP_SRC
SFTP_SERVER=$SUBSYS_SHIM
SCP=$OURS_SCP
# shellcheck source=../regress/test-lib.sh
. "$TOP_SRC/regress/test-lib.sh"
set +e
if [ "${BENCH_KEEP:-0}" != 1 ]; then
	# Cleanups run last registered first.
	[ "$made_bench_dir" = 1 ] && on_exit "rmdir '$BENCH_DIR'"
	on_exit "rm -rf '$RUN_ROOT'"
fi
mkdir -p "$SHIM_DIR"
# The remote user of cases c-e must reach the shims and its destination
# (a BENCH_DIR given by the caller keeps its mode: it must be searchable).
[ "$made_bench_dir" = 1 ] && chmod 755 "$BENCH_DIR"
chmod 755 "$RUN_ROOT" "$RUN_ROOT/regress" "$RUN_ROOT/regress/work" "$SHIM_DIR"

DATA=$WORK/src
DST=$WORK/dst
RU=$WORK/rusage
RESULTS=$WORK/results
TRASH=$WORK/trash
BIG=$DATA/big
SMALL=$DATA/small
FEW=$DATA/few
MANY=$DATA/many
mkdir -p "$DATA" "$TRASH"
# ext4 puts a new file in its directory's block group and, for 60 s after
# a deletion there (no journal), scans past each deleted inode: on a disk
# shared with test suites that create and delete thousands of files, a
# create took 0.1-0.7 ms depending on what others had just deleted
# (perf: recently_deleted()).  The "top directory" flag on WORK makes ext4
# spread each run's fresh destination into a block group of its own, so
# every run, ours or stock, starts from the same clean state.
TOPDIR=no
if command -v chattr >/dev/null && chattr +T "$WORK" 2>/dev/null; then
	TOPDIR=yes
fi
: > "$RESULTS"

# COUNT files of FILE_BYTES random bytes each in DIR.
make_small_dir() {
	local dir=$1 count=$2
	mkdir -p "$dir"
	head -c $((count * FILE_BYTES)) /dev/urandom |
	    split -b "$FILE_BYTES" -a 6 -d - "$dir/f" ||
	    die "cannot create $count files in $dir"
}

say "# bench: writing sources (${SIZE_MB} MiB file, $FILES + $FLAT_FEW + $FLAT_MANY small files)"
head -c $((SIZE_MB * 1048576)) /dev/urandom > "$BIG" || die "cannot write $BIG"
has_case b && make_small_dir "$SMALL" "$FILES"
if has_case flat; then
	make_small_dir "$FEW" "$FLAT_FEW"
	make_small_dir "$MANY" "$FLAT_MANY"
fi
chmod -R a+rX "$WORK"
# Read everything once so every run finds the sources in the page cache.
cat "$BIG" > /dev/null
find "$DATA" -type f -name 'f*' -exec cat {} + > /dev/null

# ---------------------------------------------------------------- sshd
SSHD_UP=0
needs_sshd=0
for c in c d e; do has_case "$c" && needs_sshd=1; done
write_subsys_shim() {
	# $1 rusage file, $2.. the server command line
	local ru=$1 tmp=$SUBSYS_SHIM.tmp
	shift
	{
		echo '#!/bin/sh'
		echo "BENCH_RUSAGE_FILE='$ru'; export BENCH_RUSAGE_FILE"
		echo "exec $RW $* \"\$@\""
	} > "$tmp" && chmod 755 "$tmp" && mv -f "$tmp" "$SUBSYS_SHIM"
}
write_scp_shim() {
	# $1 rusage file, $2 scp program, $3 durability level or ""
	local ru=$1 prog=$2 level=$3 tmp=$SHIM_DIR/scp.tmp
	{
		echo '#!/bin/sh'
		echo "BENCH_RUSAGE_FILE='$ru'; export BENCH_RUSAGE_FILE"
		if [ -n "$level" ]; then
			echo "ATOMIC_UPLOAD_SYNC=$level; export ATOMIC_UPLOAD_SYNC"
		fi
		echo "exec $RW $prog \"\$@\""
	} > "$tmp" && chmod 755 "$tmp" && mv -f "$tmp" "$SHIM_DIR/scp"
}
if [ "$needs_sshd" = 1 ] && [ -z "$SKIP_SSHD" ]; then
	write_subsys_shim /dev/null "$STOCK_SFTP"
	# start_sshd exits the script (through fail) if sshd cannot start.
	start_sshd
	set +e
	SSHD_UP=1
	if [ "$REMOTE_USER" != root ]; then
		id "$REMOTE_USER" >/dev/null 2>&1 ||
		    die "BENCH_REMOTE_USER $REMOTE_USER does not exist"
	fi
	CLIENT_KEY=$WORK/sshd/client_key
fi

# ---------------------------------------------------------------- variants
# A variant is "stock", an ours level (none/data/full) or a floor
# ("dd" for one big file, "floor" for many small ones); the flat case
# uses few/many (ours at level none) and stock-few/stock-many.
VARIANT_SFTP=""
VARIANT_SFTP_ARGS=""
VARIANT_SCP=""
VARIANT_LEVEL=""
select_variant() {
	case $1 in
	stock)
		VARIANT_SFTP=$STOCK_SFTP
		VARIANT_SFTP_ARGS=""
		VARIANT_SCP=$STOCK_SCP
		VARIANT_LEVEL=""
		;;
	none|data|full|few|many|nodigest)
		VARIANT_LEVEL=$1
		case $1 in few|many|nodigest) VARIANT_LEVEL=none ;; esac
		VARIANT_SFTP=$OURS_SFTP
		# The digest's cost: the same server with digests off
		# (env runs it in place: rusage still sees the server).
		[ "$1" = nodigest ] && [ "$OURS_IS_STOCK" = 0 ] &&
		    VARIANT_SFTP="env ATOMIC_UPLOAD_DIGEST=off $OURS_SFTP"
		if [ "$OURS_IS_STOCK" = 1 ]; then
			VARIANT_SFTP_ARGS=""
		else
			VARIANT_SFTP_ARGS="-s $VARIANT_LEVEL $OURS_ARGS"
		fi
		VARIANT_SCP=$OURS_SCP
		;;
	esac
}

# Destination for one run: empty, on the sources' filesystem, writable
# by the remote user of cases c-e.
fresh_dst() {
	rm -rf "$DST"
	mkdir -p "$DST"
	if [ "$SSHD_UP" = 1 ] && [ "$REMOTE_USER" != root ]; then
		chown "$REMOTE_USER" "$DST"
	fi
}

# run_case CASE VARIANT: the timed command; returns its exit status.
run_case() {
	local case=$1 variant=$2 batch=$WORK/batch
	case $case.$variant in
	a.dd)
		BENCH_RUSAGE_FILE=$RU "$RW" dd if="$BIG" of="$DST/big" \
		    bs=1M conv=fsync status=none
		;;
	b.floor)
		mkdir "$DST/small" &&
		BENCH_RUSAGE_FILE=$RU "$RW" "$FLOOR" -n "$FILES" \
		    -s "$FILE_BYTES" -y full "$DST/small" > /dev/null
		;;
	flat.stock-*)
		BENCH_RUSAGE_FILE=$RU sftp -q -D "$RW $STOCK_SFTP" \
		    -b "$batch" > /dev/null
		;;
	a.*|b.*|flat.*)
		select_variant "$variant"
		BENCH_RUSAGE_FILE=$RU sftp -q -D "$RW $VARIANT_SFTP $VARIANT_SFTP_ARGS" \
		    -b "$batch" > /dev/null
		;;
	c.*)
		select_variant "$variant"
		write_subsys_shim "$RU" "$VARIANT_SFTP $VARIANT_SFTP_ARGS" &&
		sftp -q $SSH_OPTS -b "$batch" "$REMOTE_USER@localhost" > /dev/null
		;;
	d.*)
		select_variant "$variant"
		write_scp_shim "$RU" "$VARIANT_SCP" "$VARIANT_LEVEL" &&
		"$SCP_CLIENT" -O -q $SSH_OPTS "$BIG" \
		    "$REMOTE_USER@localhost:$DST/big"
		;;
	e.*)
		select_variant "$variant"
		write_subsys_shim "$RU" "$VARIANT_SFTP $VARIANT_SFTP_ARGS" &&
		"$L2PUT" -p "$SSHD_PORT" -k "$CLIENT_KEY" -u "$REMOTE_USER" \
		    "$BIG" "$DST/big" > /dev/null
		;;
	*)
		return 99
		;;
	esac
}

# The upload must be whole and right, or its time means nothing.
verify_case() {
	local case=$1 variant=$2
	case $case.$variant in
	b.floor)
		[ "$(find "$DST/small" -type f | wc -l)" -eq "$FILES" ]
		;;
	b.*)
		diff -r -q "$SMALL" "$DST/small" > /dev/null
		;;
	flat.*few)
		diff -r -q "$FEW" "$DST/small" > /dev/null
		;;
	flat.*many)
		diff -r -q "$MANY" "$DST/small" > /dev/null
		;;
	*)
		[ "$(stat -c %s "$DST/big" 2>/dev/null)" = "$(stat -c %s "$BIG")" ] &&
		cmp -s "$BIG" "$DST/big"
		;;
	esac
}

# Sum CPU and take the largest RSS over the records of one run (there is
# one record unless something started the server twice).
read_rusage() {
	awk '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		cpu += v["user_s"] + v["sys_s"]
		if (v["maxrss_kb"] + 0 > rss) rss = v["maxrss_kb"] + 0
		if (v["status"] != 0) bad = v["status"]
		n++
	} END { if (n) printf "%.6f %d %d\n", cpu, rss, bad; }' "$RU"
}

# measure CASE VARIANT RUN: one timed run, appended to $RESULTS as
#   case variant run wall_s cpu_s rss_kb ok
# Run 0 is a warm-up: recorded, verified, left out of the figures.
measure() {
	local case=$1 variant=$2 run=$3 t0 t1 rc wall ru cpu=NA rss=NA srv=0 ok=ok i
	fresh_dst
	: > "$RU"
	chmod 666 "$RU"
	case $case in
	a|c|d|e) echo "put $BIG $DST/big" > "$WORK/batch" ;;
	b) echo "put -r $SMALL $DST/small" > "$WORK/batch" ;;
	flat)
		case $variant in
		*few) echo "put -r $FEW $DST/small" ;;
		*) echo "put -r $MANY $DST/small" ;;
		esac > "$WORK/batch"
		;;
	esac
	# Flush what earlier runs left dirty (and the deletions), then let the
	# disk settle, so no run pays for its predecessor's writeback.
	sync
	sleep "$SETTLE"
	t0=$EPOCHREALTIME
	run_case "$case" "$variant"
	rc=$?
	t1=$EPOCHREALTIME
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
	# sshd reaps the server after the client has gone: wait for its record.
	for ((i = 0; i < 200; i++)); do
		[ -s "$RU" ] && break
		sleep 0.05
	done
	ru=$(read_rusage)
	if [ -n "$ru" ]; then
		read -r cpu rss srv <<< "$ru"
	fi
	if [ "$rc" -ne 0 ]; then
		ok=fail
	elif [ -z "$ru" ]; then
		ok=norusage
	elif [ "$srv" != 0 ]; then
		ok=serverexit$srv
	elif [ "$run" -le 1 ] && ! verify_case "$case" "$variant"; then
		ok=corrupt
	fi
	echo "$case $variant $run $wall $cpu $rss $ok" >> "$RESULTS"
	say "#   $case $variant run $run: wall ${wall}s cpu ${cpu}s rss ${rss}KiB $ok"
	# ext4 without a journal will not reuse an inode for 60 s after its
	# deletion and scans past every such inode on each create, so deleting
	# thousands of small files would slow every later run that creates
	# files.  Small-file uploads are kept until the end of the benchmark.
	case $case in
	b|flat) mv "$DST" "$TRASH/$case.$variant.$run" ;;
	*) rm -rf "$DST" ;;
	esac
}

# Interleave the variants: forward on odd runs, backward on even ones, so
# a slow drift of the machine lands on every variant alike.
run_interleaved() {
	local case=$1 run v order
	shift
	# One untimed run first: the first transfer after writing the sources
	# pays for page cache and allocator warm-up that no later run sees.
	measure "$case" "$1" 0
	for ((run = 1; run <= RUNS; run++)); do
		if ((run % 2)); then
			order="$*"
		else
			order=$(echo "$@" | tr ' ' '\n' | tac | tr '\n' ' ')
		fi
		for v in $order; do
			measure "$case" "$v" "$run"
		done
	done
}

SKIPPED=""
skip_case() { SKIPPED="$SKIPPED$1 $2"$'\n'; say "# bench: case $1 skipped: $2"; }

# ---------------------------------------------------------------- run
sanitized=no
grep -q fsanitize "$TOP_OBJ/Makefile" 2>/dev/null && sanitized=yes
say "# bench: $RUNS runs per variant; cases: $CASES; levels: $LEVELS"
started=$EPOCHREALTIME

for case in $CASES; do
	say "# bench: case $case"
	case $case in
	a) run_interleaved a stock $LEVELS nodigest dd ;;
	b) run_interleaved b stock $LEVELS floor ;;
	c|e)
		if [ -n "$SKIP_SSHD" ]; then skip_case "$case" "$SKIP_SSHD"; continue; fi
		if [ "$case" = e ] && [ "$HAVE_L2PUT" = 0 ]; then
			skip_case e "libssh2 (libssh2-1-dev) not available"
			continue
		fi
		if [ "$case" = c ]; then
			run_interleaved c stock $LEVELS nodigest
		else
			run_interleaved "$case" stock $LEVELS
		fi
		;;
	d)
		if [ -n "$SKIP_SSHD" ]; then skip_case d "$SKIP_SSHD"; continue; fi
		if [ ! -x "$OURS_SCP" ]; then
			skip_case d "no scp ($OURS_SCP is not built)"
			continue
		fi
		run_interleaved d stock $LEVELS
		;;
	flat)
		# One run each: peak RSS hardly varies, and it does not depend
		# on durability, so level none keeps the 10,000 files short.
		for v in few many stock-few stock-many; do
			measure flat "$v" 1
		done
		;;
	*) die "unknown case $case (cases are a b c d e flat)" ;;
	esac
done
elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# ---------------------------------------------------------------- report
ours_desc=$OURS_SFTP
[ "$OURS_IS_STOCK" = 1 ] && ours_desc="$OURS_SFTP (STOCK: calibration run, no durability flag)"
echo "# atomic-upload benchmark (issue 6) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs ($(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%d MiB RAM", $2 / 1024 }' /proc/meminfo)," \
    "fs $(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null || stat -f -c %T "$WORK") on $(df -P "$WORK" | awk 'NR == 2 { print $1 }') ($(findmnt -n -o OPTIONS --target "$WORK" 2>/dev/null))"
echo "# ours: $ours_desc; scp $OURS_SCP${OURS_ARGS:+; extra args: $OURS_ARGS}"
echo "# stock: $STOCK_SFTP; scp $STOCK_SCP"
echo "# big file ${SIZE_MB} MiB; small files $FILES x $FILE_BYTES B; flat $FLAT_FEW vs $FLAT_MANY files;" \
    "$RUNS runs, medians; sshd user $REMOTE_USER; $elapsed s;" \
    "ext4 top-directory spreading: $TOPDIR"
[ "$sanitized" = yes ] &&
    echo "# WARNING: $TOP_OBJ is a sanitizer build: CPU and RSS of ours are not representative"
printf '%s' "$SKIPPED" | while read -r c why; do
	[ -n "$c" ] && echo "BENCH $c.skipped reason=\"$why\""
done

awk -v size_mb="$SIZE_MB" -v files="$FILES" -v levels="$LEVELS" \
    -v rss_limit="$RSS_LIMIT_KB" -v flat_kb="$RSS_FLAT_KB" \
    -v few="$FLAT_FEW" -v many="$FLAT_MANY" '
# Half the range of a list relative to its median, in percent: how far
# apart the runs were (a ratio closer to 1 than this is noise).
function spread(list, med,    a, n, i, lo, hi) {
	n = split(list, a, " ")
	if (n < 2 || med <= 0) return "-"
	lo = hi = a[1] + 0
	for (i = 2; i <= n; i++) {
		if (a[i] + 0 < lo) lo = a[i] + 0
		if (a[i] + 0 > hi) hi = a[i] + 0
	}
	return sprintf("%.0f%%", (hi - lo) * 50 / med)
}
function median(list,    a, n, i, j, t) {
	n = split(list, a, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function has(k) { return (k in nrun) && !(k in bad) }
function ratio(x, y) { return (y > 0 && x != "") ? sprintf("%.2f", x / y) : "n/a" }
function f3(x) { return x == "" ? "n/a" : sprintf("%.3f", x) }
function target(name, value, limit, cmp, what,    verdict) {
	if (value == "skip")
		verdict = "SKIP"
	else if (value == "n/a" || value == "")
		verdict = "MISS"
	else if (cmp == "<=")
		verdict = (value + 0 <= limit + 0) ? "PASS" : "MISS"
	if (value == "" || value == "skip") value = "n/a"
	printf "TARGET %-22s %s value=%s limit=%s  # %s\n", name, verdict,
	    value, limit, what
}
$3 == 0 { next }
{
	k = $1 "." $2
	if (!(k in nrun)) { order[++nkeys] = k }
	nrun[k]++
	if ($7 != "ok") { bad[k] = $7; next }
	walls[k] = walls[k] " " $4
	if ($5 != "NA") cpus[k] = cpus[k] " " $5
	if ($6 != "NA" && $6 + 0 > rss[k]) rss[k] = $6 + 0
	casename[k] = $1; variant[k] = $2
}
END {
	nlev = split(levels, lev, " ")
	for (i = 1; i <= nkeys; i++) {
		k = order[i]
		w[k] = median(walls[k]); c[k] = median(cpus[k])
	}
	print ""
	printf "%-5s %-10s %9s %6s %10s %9s %9s %8s %7s %7s  %s\n", "case", "variant",
	    "wall_s", "+-", "rate", "cpu_s", "cpu_s/GiB", "rss_kb", "wall/st", "cpu/st", "runs"
	for (i = 1; i <= nkeys; i++) {
		k = order[i]; split(k, p, ".")
		cs = p[1]; v = substr(k, length(cs) + 2)
		if (k in bad) {
			printf "%-5s %-10s %s (%d runs)\n", cs, v, toupper(bad[k]), nrun[k]
			continue
		}
		st = cs ".stock"
		if (cs == "flat") st = (v ~ /few/) ? "flat.stock-few" : "flat.stock-many"
		if (cs == "b") { nf = files }
		else if (cs == "flat") { nf = (v ~ /few/) ? few : many }
		else nf = 0
		if (nf) { rate = sprintf("%.0f f/s", nf / w[k]); gib = "-" }
		else {
			rate = sprintf("%.0f MiB/s", size_mb / w[k])
			gib = c[k] == "" ? "n/a" : sprintf("%.3f", c[k] * 1024 / size_mb)
		}
		printf "%-5s %-10s %9.3f %6s %10s %9s %9s %8s %7s %7s  %d\n", cs, v, w[k],
		    spread(walls[k], w[k]), rate,
		    f3(c[k]), gib, (k in rss) ? rss[k] : "n/a",
		    has(st) ? ratio(w[k], w[st]) : "n/a",
		    has(st) ? ratio(c[k], c[st]) : "n/a", nrun[k]
	}
	print ""
	# One stable line per case and variant.
	for (i = 1; i <= nkeys; i++) {
		k = order[i]; split(k, p, ".")
		cs = p[1]; v = substr(k, length(cs) + 2)
		if (k in bad) { printf "BENCH %s status=%s runs=%d\n", k, bad[k], nrun[k]; continue }
		if (cs == "flat") continue
		st = cs ".stock"
		if (v == "stock" || v == "dd" || v == "floor" || !has(st)) {
			printf "BENCH %s wall_s=%.3f cpu_s=%s rss_kb=%s spread=%s runs=%d\n", k, w[k],
			    f3(c[k]), (k in rss) ? rss[k] : "n/a", spread(walls[k], w[k]), nrun[k]
			continue
		}
		printf "BENCH %s wall_ratio=%s cpu_ratio=%s rss_kb=%s ours_s=%.3f stock_s=%.3f" \
		    " ours_cpu_s=%s stock_cpu_s=%s stock_rss_kb=%s ours_spread=%s stock_spread=%s" \
		    " runs=%d\n", k,
		    ratio(w[k], w[st]), ratio(c[k], c[st]), (k in rss) ? rss[k] : "n/a",
		    w[k], w[st], f3(c[k]), f3(c[st]), (st in rss) ? rss[st] : "n/a",
		    spread(walls[k], w[k]), spread(walls[st], w[st]), nrun[k]
	}
	# One line per metric, "METRIC case.variant.metric value", for
	# scripts that want a single figure (grep, cut -d" " -f3).
	for (i = 1; i <= nkeys; i++) {
		k = order[i]; split(k, p, ".")
		cs = p[1]; v = substr(k, length(cs) + 2)
		if (k in bad) continue
		st = cs ".stock"
		if (cs == "flat") st = (v ~ /few/) ? "flat.stock-few" : "flat.stock-many"
		printf "METRIC %s.wall_s %.3f\n", k, w[k]
		if (c[k] != "") printf "METRIC %s.cpu_s %.3f\n", k, c[k]
		if (c[k] != "" && (cs == "a" || cs == "c" || cs == "d" || cs == "e"))
			printf "METRIC %s.cpu_s_per_gib %.3f\n", k, c[k] * 1024 / size_mb
		if (k in rss) printf "METRIC %s.rss_kb %d\n", k, rss[k]
		if (k != st && has(st)) {
			printf "METRIC %s.wall_ratio %s\n", k, ratio(w[k], w[st])
			if (c[k] != "") printf "METRIC %s.cpu_ratio %s\n", k, ratio(c[k], c[st])
		}
	}
	growth = "n/a"
	if (has("flat.few") && has("flat.many") && rss["flat.few"] > 0) {
		growth = rss["flat.many"] - rss["flat.few"]
		printf "BENCH flat.ours files_few=%d rss_few_kb=%d files_many=%d rss_many_kb=%d" \
		    " growth_kb=%d growth_pct=%.1f stock_rss_few_kb=%s stock_rss_many_kb=%s\n",
		    few, rss["flat.few"], many, rss["flat.many"], growth,
		    growth * 100 / rss["flat.few"],
		    has("flat.stock-few") ? rss["flat.stock-few"] : "n/a",
		    has("flat.stock-many") ? rss["flat.stock-many"] : "n/a"
	}

	print ""
	print "# Targets (issue 6 section 2), from this run:"
	split("a b c d e", all, " ")
	for (i = 1; i <= 5; i++) {
		cs = all[i]
		if (!((cs ".stock") in nrun)) continue
		val = ((cs ".none") in nrun) ? "n/a" : "skip"
		if (has(cs ".none") && has(cs ".stock"))
			val = ratio(w[cs ".none"], w[cs ".stock"])
		target(cs ".none.wall_ratio", val, "1.00", "<=",
		    "durability none wall / stock wall")
	}
	if ("a.stock" in nrun) {
		val = ("a.none" in nrun) ? "n/a" : "skip"; ours_g = "n/a"; stock_g = "n/a"
		if (has("a.stock") && c["a.stock"] != "")
			stock_g = sprintf("%.3f", c["a.stock"] * 1024 / size_mb)
		if (has("a.none") && c["a.none"] != "")
			ours_g = sprintf("%.3f", c["a.none"] * 1024 / size_mb)
		if (has("a.none") && has("a.stock") && c["a.stock"] != "")
			val = ratio(c["a.none"], c["a.stock"])
		target("a.none.cpu_per_gib", val, "0.70", "<=",
		    "server CPU s/GiB, ours none " ours_g " / stock " stock_g)
	}
	# The SHA-256 of every upload (issue 15): ours none with digests
	# against ours none without, and the CPU it adds per GiB.
	split("a c", dg, " ")
	for (i = 1; i <= 2; i++) {
		cs = dg[i]
		if (!((cs ".nodigest") in nrun)) continue
		val = "n/a"; extra = "n/a"
		if (has(cs ".none") && has(cs ".nodigest")) {
			val = ratio(w[cs ".none"], w[cs ".nodigest"])
			if (c[cs ".none"] != "" && c[cs ".nodigest"] != "")
				extra = sprintf("%.3f", (c[cs ".none"] - \
				    c[cs ".nodigest"]) * 1024 / size_mb)
		}
		printf "METRIC %s.digest.cpu_s_per_gib %s\n", cs, extra
		target(cs ".digest.wall_ratio", val, "1.05", "<=",
		    "none with SHA-256 / none without; digest CPU s/GiB " extra)
	}
	ddw = has("a.dd") ? w["a.dd"] : ""
	for (i = 1; i <= 5; i++) {
		cs = all[i]
		if (cs == "b" || !((cs ".stock") in nrun)) continue
		if (!has(cs ".full") || !has(cs ".stock")) {
			target(cs ".full.wall_vs_floor", (cs ".full") in nrun ? "n/a" : "skip",
			    "1.10", "<=", "durability full not measured or failed")
			continue
		}
		ref = w[cs ".stock"]; refname = "stock"
		if (ddw != "" && ddw > ref) { ref = ddw; refname = "dd conv=fsync" }
		dds = "n/a"
		if (ddw != "") dds = sprintf("%.3f", ddw)
		target(cs ".full.wall_vs_floor", ratio(w[cs ".full"], ref), "1.10", "<=",
		    sprintf("full %.3f s / max(stock %.3f s, dd conv=fsync %s s) = %s",
		    w[cs ".full"], w[cs ".stock"], dds, refname))
	}
	if ("b.stock" in nrun) {
		val = ("b.full" in nrun) ? "n/a" : "skip"; fl = "n/a"
		if (has("b.floor")) fl = sprintf("%.3f", w["b.floor"])
		if (has("b.full") && has("b.floor")) val = ratio(w["b.full"], w["b.floor"])
		target("b.full.wall_vs_floor", val, "1.20", "<=",
		    "full small files / bench/floor (" fl " s)")
	}
	peak = 0; peakat = "n/a"
	for (i = 1; i <= nkeys; i++) {
		k = order[i]; split(k, p, ".")
		v = substr(k, length(p[1]) + 2)
		if (v == "stock" || v ~ /^stock-/ || v == "dd" || v == "floor") continue
		if ((k in rss) && rss[k] > peak) { peak = rss[k]; peakat = k }
	}
	if (!peak) peak = "n/a"
	target("ours.peak_rss_kb", peak, rss_limit, "<=",
	    "largest peak RSS of ours over every case (" peakat ")")
	if ("flat.few" in nrun)
		target("flat.rss_growth_kb", growth, flat_kb, "<=",
		    sprintf("peak RSS growth from %d to %d files in one session", few, many))
}' "$RESULTS"

[ "${BENCH_KEEP:-0}" = 1 ] && echo "# kept: $WORK (results: $RESULTS)"
exit 0
