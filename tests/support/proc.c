#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static void child(int fd, const char *const argv[], const char *const env[])
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fd, STDERR_FILENO);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    /* The test runner ignores its own leak reports (tests/CMakeLists.txt); our binaries
     * must not: a leak at exit makes their exit status fail the test. */
    unsetenv("LSAN_OPTIONS");
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        char name[128];
        size_t n = strcspn(env[i], "=");
        if (env[i][n] != '=' || n >= sizeof(name))
            continue;
        memcpy(name, env[i], n);
        name[n] = '\0';
        setenv(name, env[i] + n + 1, 1);
    }
    execv(argv[0], (char *const *)(uintptr_t)argv);
    fprintf(stderr, "exec %s failed\n", argv[0]);
    _exit(127);
}

int proc_spawn(struct proc *p, const char *const argv[], const char *const env[])
{
    memset(p, 0, sizeof(*p));
    /* A fresh, empty file made before the fork: a name that could repeat (a reused pid)
     * would let proc_start read an old process's "listening" line. */
    snprintf(p->log_path, sizeof(p->log_path), "/tmp/pdstest-XXXXXX");
    int fd = mkstemp(p->log_path);
    if (fd < 0)
        return -1;
    p->pid = fork();
    if (p->pid == 0)
        child(fd, argv, env);
    close(fd);
    return p->pid < 0 ? -1 : 0;
}

static int read_port(const struct proc *p)
{
    char *log = proc_log(p);
    int port = -1;
    const char *at = log != NULL ? strstr(log, "\"msg\":\"listening\"") : NULL;
    const char *num = at != NULL ? strstr(at, "\"port\":") : NULL;
    if (num != NULL)
        port = (int)strtol(num + 7, NULL, 10);
    free(log);
    return port;
}

int proc_start(struct proc *p, const char *const argv[], const char *const env[])
{
    if (proc_spawn(p, argv, env))
        return -1;
    for (int i = 0; i < 1000; i++) {
        p->port = read_port(p);
        if (p->port > 0)
            return 0;
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

int proc_wait(struct proc *p, unsigned timeout_ms)
{
    int status;
    for (unsigned waited = 0; p->pid > 0; waited += 5) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (waited >= timeout_ms) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            p->pid = 0;
            return -1;
        }
        sleep_ms(5);
    }
    return -1;
}

int proc_stop(struct proc *p, int sig, unsigned timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    return proc_wait(p, timeout_ms);
}

char *proc_log(const struct proc *p)
{
    return read_file(p->log_path, NULL);
}

int proc_log_count(const struct proc *p, const char *needle)
{
    char *log = proc_log(p);
    int n = 0;
    for (const char *at = log; at != NULL && (at = strstr(at, needle)) != NULL; at++)
        n++;
    free(log);
    return n;
}

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}
