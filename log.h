/*
 * Logging with OpenSSH's levels and line shapes: one line per event, to
 * syslog (ident progname[pid]) or, with -e, to stderr as "text\r\n".
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_QUIET = 0,
	LOG_LEVEL_FATAL,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_INFO,
	LOG_LEVEL_VERBOSE,
	LOG_LEVEL_DEBUG1,
	LOG_LEVEL_DEBUG2,
	LOG_LEVEL_DEBUG3
};

/* (Re)initialise; safe to call again, e.g. from tests. `facility` is a
 * syslog LOG_* facility value. */
void log_init(const char *progname, enum log_level level, int facility,
    int to_stderr);
/* Close syslog and return to defaults (stderr, ERROR). */
void log_reset(void);
enum log_level log_get_level(void);
/*
 * For a process that leaves the session (the hook runner): syslog is
 * closed, to be reopened with the same ident and facility at the next
 * line, and lines that went to a standard error that is not a file or a
 * terminal (the connection's pipe, about to be let go) go to syslog.
 * Call it after standard error has been replaced, or before.
 */
void log_detach(void);

/* Names as stock accepts them (case-insensitive); 0 or -1 if unknown. */
int log_parse_level(const char *name, enum log_level *out);
int log_parse_facility(const char *name, int *out);

void do_log(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void do_logv(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * Log at FATAL, abort every open staging (nothing half-written may be
 * published or left behind), run the cleanup hook, and exit(255).
 */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* Called by fatal() before exiting (e.g. to log "forced close" lines). */
void log_set_fatal_hook(void (*hook)(void));
/* Hand every formatted line to `sink` instead of stderr or syslog (tests
 * and fuzzers: the formatting runs, nothing is written); NULL undoes it.
 * log_reset() undoes it too. */
void log_set_sink(void (*sink)(enum log_level level, const char *line));

struct stage_report;
/* The one INFO line per commit or abort (DESIGN.md 11):
 *   commit "PATH" bytes N seconds S method M [sha256 HEX]
 *   abort "PATH" bytes N seconds S method M reason "WHY"
 * A failed commit is logged as an abort whose reason names the step. */
void log_stage(const struct stage_report *rep, int committed);

#define error(...)	do_log(LOG_LEVEL_ERROR, __VA_ARGS__)
#define logit(...)	do_log(LOG_LEVEL_INFO, __VA_ARGS__)
#define verbose(...)	do_log(LOG_LEVEL_VERBOSE, __VA_ARGS__)
#define debug(...)	do_log(LOG_LEVEL_DEBUG1, __VA_ARGS__)
#define debug2(...)	do_log(LOG_LEVEL_DEBUG2, __VA_ARGS__)
#define debug3(...)	do_log(LOG_LEVEL_DEBUG3, __VA_ARGS__)

#endif /* LOG_H */
