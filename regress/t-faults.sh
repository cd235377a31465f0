#!/bin/bash
# Fault injection into the staging module (atomic-upload.c), two ways:
#   1. regress/helpers/faultshim.so (LD_PRELOAD): fails chosen libc calls
#      for files below one directory, and counts every call it sees;
#   2. strace -e inject, which works on the system calls themselves and so
#      also catches anything the shim cannot see (glibc-internal calls).
# The program under test is the unit-test binary's tool mode,
# "test_atomic_upload -x stage ...", which prints one line such as
#   open=OK method=named note=- write=OK commit=EIO reason="..." bytes=N
# After every fault: the caller saw the error, the destination holds its
# previous content (or is absent), and nothing else is left behind.
tid=t-faults
. "${SRC:-$(cd "$(dirname "$0")/.." && pwd)}/regress/test-lib.sh"

T="$OBJ/regress/unittests/test_atomic_upload"
SHIM="$OBJ/regress/helpers/faultshim.so"
[ -x "$T" ] || fail "missing $T (make unittests)"
[ -f "$SHIM" ] || fail "missing $SHIM (make helpers)"

D="$WORK/d"		# destination directory; the shim acts only here
S="$WORK/stage"		# a shared staging directory
CNT="$WORK/count"	# the shim's call log
OLD="previous content"

reset() {
	rm -rf "$D" "$S"
	mkdir -p "$D" "$S"
	chmod 1777 "$S"
	: >"$CNT"
}

# shim SPEC TOOL-ARGS...: run the tool under the shim; output in $out.
shim() {
	local spec=$1
	shift
	: >"$CNT"
	out=$(LD_PRELOAD="$SHIM" FAULTSHIM="$spec" FAULTSHIM_DIR="$D" \
	    FAULTSHIM_COUNT="$CNT" "$T" -x stage "$@" 2>&1)
	trace "FAULTSHIM=$spec $*: $out"
}

# has DESC PATTERN: ok if $out matches the glob PATTERN.
has() {
	case "$out" in
	$2) ok "$1" ;;
	*) notok "$1 (got: $out)" ;;
	esac
}

# entries DIR NAME...: DIR holds exactly these names (no debris).
entries() {
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
	got=$(ls -A "$dir" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] && return 0
	verbose "$dir holds [$got], want [$want]"
	return 1
}

# is_fill FILE N C: FILE is N bytes of the character C.
is_fill() {
	[ -f "$1" ] && [ "$(stat -c %s "$1")" -eq "$2" ] &&
	    [ -z "$(tr -d "$3" <"$1" | head -c 1)" ]
}

is_old() {
	[ -f "$1" ] && [ "$(cat "$1")" = "$OLD" ]
}

# Run one fault on an existing destination: the tool's output must match
# PATTERN, the old content must survive, and nothing else may remain.
# fault_replace DESC SPEC PATTERN TOOL-ARGS...
fault_replace() {
	local desc=$1 spec=$2 pat=$3
	shift 3
	reset
	printf '%s' "$OLD" >"$D/f"
	shim "$spec" "$@" "$D/f"
	has "$desc: error reported" "$pat"
	check "$desc: previous content kept" is_old "$D/f"
	check "$desc: no debris" entries "$D" f
}

# fault_new DESC SPEC PATTERN TOOL-ARGS...: the same for a new file.
fault_new() {
	local desc=$1 spec=$2 pat=$3
	shift 3
	reset
	shim "$spec" "$@" "$D/f"
	has "$desc: error reported" "$pat"
	check "$desc: nothing published, no debris" entries "$D"
}

# ---------------------------------------------------------------------
# 0. What the module really calls (for people reading the log), and does
#    the shim see every sync and publish call the kernel sees?

# LeakSanitizer cannot run under ptrace: off for traced runs (strace,
# ltrace) in sanitizer builds; everything else stays on.
st() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace "$@"
}

have_strace=0
if command -v strace >/dev/null 2>&1 &&
    strace -f -o /dev/null true >/dev/null 2>&1; then
	have_strace=1
fi

if [ $have_strace = 1 ]; then
	for m in "" -n; do
		mn=tmpfile
		[ -n "$m" ] && mn=named
		reset
		printf '%s' "$OLD" >"$D/f"
		st -f -o "$WORK/strace" -e trace=%file,%desc \
		    "$T" -x stage $m -b 200000 "$D/f" >/dev/null 2>&1
		verbose "system calls of a replace ($mn):"
		grep -E 'O_TMPFILE|O_CREAT|fsync|fdatasync|rename|link|flock|fchmod|fchown|sync_file_range|copy_file_range' \
		    "$WORK/strace" | grep -v -e '\.so' -e 'ld.so' |
		    sed 's/^[0-9]* */#   /; s/\(pwrite64([0-9]*, \)"[^"]*"\.*/\1.../'
		reset
		printf '%s' "$OLD" >"$D/f"
		shim "" $m -b 200000 "$D/f"
		st -f -o "$WORK/strace" "$T" -x stage $m -b 200000 "$D/f" \
		    >/dev/null 2>&1
		for c in fsync fdatasync renameat renameat2 linkat pwrite64; do
			k=$(grep -c "^[0-9]* *$c(" "$WORK/strace")
			s=$c
			[ $c = pwrite64 ] && s=pwrite
			n=$(awk -v f="$s" '$2 == f' "$CNT" | wc -l)
			if [ "$k" -eq "$n" ]; then
				ok "shim sees all $k $c calls ($mn)"
			else
				notok "shim saw $n $c calls, strace $k ($mn)"
			fi
		done
	done
else
	skip "system call survey" "strace missing or ptrace not permitted"
fi
# The shim only sees calls made through these dynamic symbols: ltrace
# lists the library functions the module really calls (an internal alias
# such as __open64_2 or a raw syscall() would escape the shim).
WRAPPED=" open open64 openat openat64 read write pwrite pwrite64 close flock fsync fdatasync sync_file_range ftruncate copy_file_range fchmod fchown fsetxattr rename renameat renameat2 link linkat unlink unlinkat getrandom "
if command -v ltrace >/dev/null 2>&1; then
	for args in "-b 100000" "-n -b 100000" "-n -F wcte -b 10" "-F w -b 10" \
	    "-s full -b 20000000"; do
		reset
		case "$args" in
		*wcte*) ;;	# O_EXCL needs a new name
		*) printf '%s' "$OLD" >"$D/f" ;;
		esac
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		    ltrace -f -o "$WORK/ltrace" \
		    -e 'open*+fsync+fdatasync+rename*+link*+unlink*+pwrite*+write+copy_file_range+sync_file_range+ftruncate*+fchmod+fchown+fsetxattr+flock+getrandom+syscall+__open*+__openat*+__pwrite*+__write*' \
		    "$T" -x stage $args "$D/f" >/dev/null 2>&1
		calls=$(sed -n 's/^[0-9]* test_atomic_upload->\([a-zA-Z0-9_]*\)(.*/\1/p' \
		    "$WORK/ltrace" | sort -u | tr '\n' ' ')
		verbose "library calls ($args): $calls"
		missing=""
		for c in $calls; do
			case "$WRAPPED" in
			*" $c "*) ;;
			*) missing="$missing $c" ;;
			esac
		done
		if [ -z "$calls" ]; then
			skip "ltrace survey ($args)" "ltrace saw nothing"
		elif [ -z "$missing" ]; then
			ok "every I/O call of the module goes through a wrapped symbol ($args)"
		else
			notok "module calls$missing, which the shim does not wrap ($args)"
		fi
	done
else
	skip "library call survey" "ltrace not installed"
fi

# ---------------------------------------------------------------------
# 1. Durability: count the syncs around the publishing call.

# sync_profile: from the shim log, "FB FA DB DA P" = file syncs before /
# after the first publish, directory syncs before / after the last
# publish, publishing calls.
sync_profile() {
	awk '
	function publish(f) { return f ~ /^(rename|renameat|renameat2|link|linkat)$/ }
	function sync(f) { return f == "fsync" || f == "fdatasync" }
	{ n++; fn[n] = $2; kind[n] = $3; res[n] = $4 }
	END {
		first = 0; last = 0; p = 0
		for (i = 1; i <= n; i++)
			if (publish(fn[i]) && res[i] == "ok") {
				if (!first) first = i
				last = i; p++
			}
		fb = fa = db = da = 0
		for (i = 1; i <= n; i++) {
			if (!sync(fn[i])) continue
			if (kind[i] == "file") { if (i < first) fb++; else fa++ }
			if (kind[i] == "dir") { if (i > last) da++; else db++ }
		}
		print fb, fa, db, da, p
	}' "$CNT"
}

for m in "" -n; do
	mname=${m:-tmpfile}
	[ -n "$m" ] && mname=named
	for what in new replace; do
		for s in full data none; do
			reset
			[ $what = replace ] && printf '%s' "$OLD" >"$D/f"
			shim "" $m -s $s -b 300000 "$D/f"
			read -r fb fa db da p <<<"$(sync_profile)"
			desc="sync $s, $what, $mname"
			case "$out" in
			*commit=OK*) ;;
			*) notok "$desc: commit failed: $out"; continue ;;
			esac
			if [ "$p" -lt 1 ]; then
				notok "$desc: no rename/link seen"
				continue
			fi
			case $s in
			full)
				check "$desc: file synced before publishing" \
				    test "$fb" -ge 1
				check "$desc: directory synced after publishing" \
				    test "$da" -ge 1
				;;
			data)
				check "$desc: file synced before publishing" \
				    test "$fb" -ge 1
				check "$desc: no directory sync" test $((db + da)) -eq 0
				;;
			none)
				check "$desc: no sync at all" \
				    test $((fb + fa + db + da)) -eq 0
				;;
			esac
			check "$desc: content" is_fill "$D/f" 300000 x
		done
	done
done

# The header promises write-behind during the transfer when durability is
# on (so the commit's fsync has little left to do), and none when off.
for s in full none; do
	reset
	shim "" -s $s -b $((40 * 1024 * 1024)) "$D/f"
	n=$(awk '$2 == "sync_file_range"' "$CNT" | wc -l)
	if [ $s = full ]; then
		check "write-behind during a 40 MiB upload with sync full ($n calls)" \
		    test "$n" -gt 0
	else
		check "no write-behind with sync none ($n calls)" test "$n" -eq 0
	fi
done

# ---------------------------------------------------------------------
# 2. Faults through the shim.

for m in "" -n; do
	mn=tmpfile
	[ -n "$m" ] && mn=named

	# The caller sees a write error (and then aborts, -A).
	fault_replace "[$mn] write ENOSPC" "pwrite:ENOSPC:after=2" \
	    "*write=ENOSPC*" $m -A -b 300000
	fault_replace "[$mn] write EDQUOT" "pwrite:EDQUOT" \
	    "*write=EDQUOT*" $m -A -b 1000
	# DESIGN 3: a server-side write error aborts; the data after the
	# failed write is missing, so a later commit must not publish a
	# prefix.  (A handler that commits after a write error it already
	# reported would otherwise publish a truncated file.)
	fault_replace "[$mn] commit after a failed write" \
	    "pwrite:ENOSPC:after=2" "*write=ENOSPC*commit=E*" $m -b 300000

	fault_replace "[$mn] file sync EIO" "fdatasync:EIO:file,fsync:EIO:file" \
	    "*commit=EIO*" $m -b 100000
	fault_new "[$mn] file sync EIO, new file" \
	    "fdatasync:EIO:file,fsync:EIO:file" "*commit=EIO*" $m -b 100000
	fault_replace "[$mn] file sync EIO, sync data" \
	    "fdatasync:EIO:file,fsync:EIO:file" "*commit=EIO*" $m -s data -b 1000
	reset
	printf '%s' "$OLD" >"$D/f"
	shim "fdatasync:EIO,fsync:EIO" $m -s none -b 1000 "$D/f"
	has "[$mn] sync none makes no sync call to fail" "*commit=OK*"

	fault_replace "[$mn] rename EIO" "rename*:EIO" "*commit=EIO*" $m -b 1000
	fault_replace "[$mn] rename and link EIO" "rename*:EIO,link*:EIO" \
	    "*commit=EIO*" $m -b 1000
	fault_new "[$mn] rename and link EIO, new file" \
	    "rename*:EIO,link*:EIO" "*commit=EIO*" $m -b 1000
	fault_new "[$mn] rename and link EIO, O_EXCL" \
	    "rename*:EIO,link*:EIO" "*commit=EIO*" $m -F wcte -b 1000
	fault_new "[$mn] openat EMFILE" "open*:EMFILE" "open=EMFILE*" $m -b 1000
	fault_replace "[$mn] openat EMFILE" "open*:EMFILE" "open=EMFILE*" $m -b 1000
	# The old file's mode goes on the staged file at open.
	fault_replace "[$mn] fchmod EPERM at open" "fchmod:EPERM" \
	    "open=EPERM*" $m -b 1000

	# Copy-on-modify: the copy, made at the first write, fails or
	# falls back to pread/pwrite; the write and the commit fail.
	fault_replace "[$mn] copy_file_range EIO" "copy_file_range:EIO" \
	    "*write=EIO*commit=EIO*" $m -F w -o 2 -b 3 -c Z
	fault_replace "[$mn] copy fallback, write ENOSPC" \
	    "copy_file_range:ENOSYS,pwrite:ENOSPC" "*write=ENOSPC*commit=ENOSPC*" \
	    $m -F w -b 1
	fault_replace "[$mn] copy fallback, read EIO" \
	    "copy_file_range:ENOSYS,pread:EIO" "*write=EIO*commit=EIO*" $m -F w -b 1
	reset
	printf '%s' "$OLD" >"$D/f"
	shim "copy_file_range:EXDEV" $m -F w -o 2 -b 3 -c Z "$D/f"
	has "[$mn] copy_file_range EXDEV: read/write fallback commits" \
	    "*commit=OK*"
	check "[$mn] copy_file_range EXDEV: old data plus the edit" \
	    test "$(cat "$D/f")" = "prZZZous content"

	# Short writes and EINTR are retried, not reported.
	reset
	shim "pwrite:SHORT" $m -b 300000 "$D/f"
	has "[$mn] short writes retried" "*write=OK*commit=OK*"
	check "[$mn] short writes: content" is_fill "$D/f" 300000 x
	reset
	shim "pwrite:EINTR:nth=1,fdatasync:EINTR:nth=1,fsync:EINTR:nth=1" \
	    $m -b 300000 "$D/f"
	has "[$mn] EINTR in write and sync retried" "*write=OK*commit=OK*"
	check "[$mn] EINTR: content" is_fill "$D/f" 300000 x
done

# A named temporary that cannot be removed on abort is found by the sweep.
reset
printf '%s' "$OLD" >"$D/f"
shim "unlinkat:EIO" -n -A -b 1000 "$D/f"
has "abort with unlink EIO" "*abort=OK*"
n=$(ls -A "$D" | wc -l)
out=$("$T" -x sweep "$D")
has "sweep removes what the failed abort left ($n entries before)" \
    "sweep=OK removed=*"
check "after sweep: only the destination, old content" entries "$D" f
check "after sweep: old content" is_old "$D/f"

# A sweep running while another process is between creating its named
# temporary and locking it (the window widened to 1.5 s by delaying
# flock) must not break that live upload.
reset
LD_PRELOAD="$SHIM" FAULTSHIM="flock:DELAY:ms=1500" FAULTSHIM_DIR="$D" \
    "$T" -x stage -n -b 1000 "$D/f" >"$WORK/racer.out" 2>&1 &
racer=$!
on_exit "kill $racer"
wait_for sh -c "ls -A '$D' | grep -q ."
out=$("$T" -x sweep "$D" 2>&1)
verbose "sweep during the create-to-lock window: $out"
wait $racer
out=$(cat "$WORK/racer.out")
has "a sweep in the create-to-lock window does not break the upload" \
    "*commit=OK*"
check "... complete" is_fill "$D/f" 1000 x
check "... no debris" entries "$D" f

# Writing in place (staging off): a close error is the commit's error.
reset
printf '%s' "$OLD" >"$D/f"
shim "close:EIO:file" -D -b 1000 "$D/f"
has "staging disabled: close EIO reported by commit" "*commit=EIO*"

# A directory sync failing after the rename: the error must reach the
# caller (it may not report success), nothing may be left behind.  The
# rename has happened, so the new content is in place: atomic-upload.h
# ("On failure the destination is untouched") does not cover this case.
for m in "" -n; do
	mn=tmpfile
	[ -n "$m" ] && mn=named
	reset
	printf '%s' "$OLD" >"$D/f"
	shim "fsync:EIO:dir,fdatasync:EIO:dir" $m -s full -b 1000 "$D/f"
	has "[$mn] directory sync EIO reported" "*commit=EIO*"
	check "[$mn] directory sync EIO: no debris" entries "$D" f
	if is_old "$D/f"; then
		verbose "directory sync EIO: destination kept the old content"
	else
		verbose "directory sync EIO: destination has the new content"
	fi
done

# ---------------------------------------------------------------------
# 3. Predictable names (getrandom returns zeros): a symlink planted at
#    the exact temporary name is never followed.

victim="$WORK/victim"
for place in dest tmpdir; do
	reset
	printf 'precious' >"$victim"
	chmod 666 "$victim"
	targs=""
	[ $place = tmpdir ] && targs="-t $S"
	# Learn the name the zeroed random source produces.
	out=$(LD_PRELOAD="$SHIM" FAULTSHIM="getrandom:ZERO" \
	    "$T" -x stage -n $targs -L -A -b 10 "$D/up.csv" 2>&1)
	name=$(printf '%s\n' "$out" | awk '$3 == "temp" { print $2; exit }')
	if [ -z "$name" ]; then
		notok "predictable name ($place): no temporary seen: $out"
		continue
	fi
	dir=$D
	[ $place = tmpdir ] && dir=$S
	ln -s "$victim" "$dir/$name"
	out=$(LD_PRELOAD="$SHIM" FAULTSHIM="getrandom:ZERO" \
	    "$T" -x stage -n $targs -b 1000 -c Q "$D/up.csv" 2>&1)
	verbose "planted $place/$name -> victim: $out"
	check "planted symlink ($place): victim untouched" \
	    test "$(cat "$victim")" = precious
	check "planted symlink ($place): link still a link" test -L "$dir/$name"
	case "$out" in
	*commit=OK*) check "planted symlink ($place): upload complete" \
	    is_fill "$D/up.csv" 1000 Q ;;
	open=OK*) notok "planted symlink ($place): staged, then failed: $out" ;;
	*) ok "planted symlink ($place): upload refused rather than follow" ;;
	esac
done
# The O_TMPFILE replace links to a temporary name before the rename.
reset
printf 'precious' >"$victim"
printf '%s' "$OLD" >"$D/f"
out=$(LD_PRELOAD="$SHIM" FAULTSHIM="getrandom:ZERO" FAULTSHIM_DIR="$D" \
    FAULTSHIM_COUNT="$CNT" "$T" -x stage -b 10 "$D/f" 2>&1)
name=$(awk '$2 == "linkat" { print $5; exit }' "$CNT")
if [ -n "$name" ] && [ "$name" != f ]; then
	printf '%s' "$OLD" >"$D/f"
	ln -s "$victim" "$D/$name"
	out=$(LD_PRELOAD="$SHIM" FAULTSHIM="getrandom:ZERO" \
	    "$T" -x stage -b 1000 -c Q "$D/f" 2>&1)
	verbose "planted $name for the O_TMPFILE link: $out"
	check "O_TMPFILE replace, planted link name: victim untouched" \
	    test "$(cat "$victim")" = precious
	check "O_TMPFILE replace: destination old or complete" \
	    eval 'is_old "$D/f" || is_fill "$D/f" 1000 Q'
else
	skip "O_TMPFILE replace with a planted link name" \
	    "no intermediate link seen (${name:-none})"
fi

# ---------------------------------------------------------------------
# 4. The same faults injected by strace, below libc.

# sfault DESC INJECT PATTERN TOOL-ARGS... (replace of an existing file)
sfault() {
	local desc=$1 inj=$2 pat=$3 set
	shift 3
	set=${inj%%:*}
	reset
	printf '%s' "$OLD" >"$D/f"
	# -P matches exact paths only (not files below $D): used for openat,
	# where the dynamic loader's own opens must not fail.
	local -a only=()
	[ "$set" = openat ] && only=(-P "$D")
	out=$(st -f -o /dev/null "${only[@]}" -e trace="$set" \
	    -e inject="$inj" "$T" -x stage "$@" "$D/f" 2>&1)
	has "strace $desc: error reported" "$pat"
	check "strace $desc: previous content kept" is_old "$D/f"
	check "strace $desc: no debris" entries "$D" f
}

if [ $have_strace = 1 ]; then
	for m in "" -n; do
		mn=tmpfile
		[ -n "$m" ] && mn=named
		sfault "[$mn] fsync+fdatasync EIO" "fsync,fdatasync:error=EIO" \
		    "*commit=EIO*" $m -b 100000
		sfault "[$mn] rename/link EIO" \
		    "renameat,renameat2,rename,linkat,link:error=EIO" \
		    "*commit=EIO*" $m -b 1000
		sfault "[$mn] pwrite ENOSPC" "pwrite64:error=ENOSPC:when=2+" \
		    "*write=ENOSPC*" $m -A -b 300000
		sfault "[$mn] openat EMFILE" "openat:error=EMFILE" \
		    "open=EMFILE*" $m -b 1000
		reset
		out=$(st -f -o /dev/null -e trace=pwrite64,fdatasync \
		    -e inject=pwrite64,fdatasync:error=EINTR:when=1 \
		    "$T" -x stage $m -b 100000 "$D/f" 2>&1)
		has "strace [$mn] EINTR in pwrite and fdatasync retried" \
		    "*write=OK*commit=OK*"
		check "strace [$mn] EINTR: content" is_fill "$D/f" 100000 x
	done
	# DESIGN 9, checked on the system calls: a named staged file lives
	# in a private directory made 0700 for it and opened O_NOFOLLOW; the
	# file is created O_CREAT|O_EXCL|O_NOFOLLOW and never opened by name
	# again; its name carries nothing of the destination's.
	for place in dest tmpdir; do
		reset
		targs=""
		[ $place = tmpdir ] && targs="-t $S"
		out=$(st -f -o "$WORK/strace" \
		    -e trace=open,openat,creat,mkdir,mkdirat \
		    "$T" -x stage -n $targs -L -b 1000 "$D/secret-name" 2>&1)
		name=$(printf '%s\n' "$out" | awk '$3 == "temp" { print $2; exit }')
		if [ -z "$name" ]; then
			notok "temp creation ($place): no private directory seen: $out"
			continue
		fi
		case "$name" in
		*secret*) notok "temp ($place) name shows the destination: $name" ;;
		*) ok "temp ($place) name shows nothing of the destination" ;;
		esac
		mk=$(grep -F "\"$name\"" "$WORK/strace" | grep 'mkdir' | head -1)
		dopen=$(grep -F "\"$name\"" "$WORK/strace" | grep 'open' | head -1)
		verbose "$mk"
		verbose "$dopen"
		case "$mk" in
		*", 0700)"*) ok "private directory ($place) made mode 0700" ;;
		*) notok "private directory ($place) not made mode 0700: $mk" ;;
		esac
		case "$dopen" in
		*O_NOFOLLOW*) ok "private directory ($place) opened O_NOFOLLOW" ;;
		*) notok "private directory ($place) opened without O_NOFOLLOW" ;;
		esac
		opens=$(grep -c '"upload"' "$WORK/strace")
		create=$(grep '"upload"' "$WORK/strace" | head -1)
		verbose "$create"
		check "temp ($place) opened once only ($opens)" test "$opens" -eq 1
		for f in O_CREAT O_EXCL O_NOFOLLOW; do
			case "$create" in
			*"$f"*) ok "temp ($place) created with $f" ;;
			*) notok "temp ($place) created without $f" ;;
			esac
		done
	done
else
	skip "strace fault injection" "strace missing or ptrace not permitted"
fi
