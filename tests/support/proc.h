#ifndef PDS_TEST_PROC_H
#define PDS_TEST_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* A child process of a test (pds-trace, mock-pds): started with extra environment, its
 * stderr captured in a log file, its HTTP port read back from its "listening" log line
 * ({"msg":"listening","port":N}). It dies with the test process (PR_SET_PDEATHSIG). */
struct proc {
    pid_t pid;
    int port;
    char log_path[128];
};

/* argv[0] is a path; env holds extra "NAME=value" entries (NULL-terminated, may be NULL).
 * Waits up to 10 s for the listening line. Returns 0 or -1 (the log is kept). */
int proc_start(struct proc *p, const char *const argv[], const char *const env[]);

/* Like proc_start, without waiting for a port; for commands that exit. */
int proc_spawn(struct proc *p, const char *const argv[], const char *const env[]);

/* Sends sig and waits up to timeout_ms for the exit. Returns the exit status (0-255),
 * 128+signal when killed by one, or -1 on timeout (the process is then SIGKILLed). */
int proc_stop(struct proc *p, int sig, unsigned timeout_ms);

/* Waits up to timeout_ms for a process to exit by itself; as proc_stop. */
int proc_wait(struct proc *p, unsigned timeout_ms);

/* The captured log (malloc'd, free it), or NULL. */
char *proc_log(const struct proc *p);

/* Counts log lines holding needle. */
int proc_log_count(const struct proc *p, const char *needle);

/* A free loopback TCP port, for servers that cannot bind port 0. */
int free_port(void);

#endif
