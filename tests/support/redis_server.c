#include "redis_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>

#define READY_LIMIT_MS 5000
#define STOP_LIMIT_MS  5000
#define START_ATTEMPTS 5

/* The child exited before answering: most likely another process took the port. */
#define EXITED_EARLY (-EADDRINUSE)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *server_binary(void)
{
    const char *bin = getenv("PDS_REDIS_SERVER");
    return bin != NULL && bin[0] != '\0' ? bin : "redis-server";
}

/* Binding to port 0 and closing leaves a small race with other processes; start() retries
 * with a new port when Redis then fails to bind. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        err = -errno;
    close(fd);
    return err != 0 ? err : ntohs(sa.sin_port);
}

static void redirect_output(const char *dir)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/redis.log", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
}

/* Redis must not inherit the test's descriptors (criterion's pipes, sockets): a stray
 * copy would keep them open after the test process ends. */
static void close_inherited(void)
{
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 4096)
        max = 4096;
    for (int fd = STDERR_FILENO + 1; fd < max; fd++)
        close(fd);
}

static void conf_path(const struct redis_server *rs, char *out, size_t size)
{
    snprintf(out, size, "%s/extra.conf", rs->dir);
}

/* Runs in the child only; never returns. */
static void exec_redis(const struct redis_server *rs, pid_t parent)
{
    sigset_t none;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the parent died before prctl took effect */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    redirect_output(rs->dir);
    close_inherited();
    char port[16], conf[300];
    snprintf(port, sizeof(port), "%d", rs->port);
    conf_path(rs, conf, sizeof(conf));
    const char *args[] = {server_binary(),
                          conf,
                          "--port",
                          port,
                          "--bind",
                          "127.0.0.1",
                          "--dir",
                          rs->dir,
                          "--save",
                          "",
                          "--appendonly",
                          rs->aof ? "yes" : "no",
                          "--appendfsync",
                          "everysec",
                          "--daemonize",
                          "no",
                          NULL};
    enum { NARGS = sizeof(args) / sizeof(args[0]) };
    char *argv[NARGS];
    /* Without extra lines there is no config file: Redis then runs on its defaults. */
    size_t skip = rs->has_conf ? 0 : 1;
    argv[0] = strdup(args[0]);
    for (size_t i = 1 + skip; i < NARGS; i++)
        argv[i - skip] = args[i] != NULL ? strdup(args[i]) : NULL;
    execvp(argv[0], argv);
    _exit(127);
}

/* Answers whether the Redis on port is ours (another test's Redis may hold a port we
 * thought free), by comparing the process_id in INFO. */
static bool answers_ping(const struct redis_server *rs)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    bool ok = false;
    if (c != NULL && c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK) {
        if (rs->has_conf)
            freeReplyObject(redisCommand(c, "AUTH %s %s", REDIS_SERVER_HARNESS_USER,
                                         REDIS_SERVER_HARNESS_PASSWORD));
        redisReply *r = redisCommand(c, "INFO server");
        const char *pid =
            r != NULL && r->type == REDIS_REPLY_STRING ? strstr(r->str, "process_id:") : NULL;
        ok = pid != NULL && strtol(pid + strlen("process_id:"), NULL, 10) == (long)rs->pid;
        freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

static void reap(struct redis_server *rs)
{
    kill(rs->pid, SIGKILL);
    while (waitpid(rs->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    rs->pid = 0;
}

static int wait_ready(struct redis_server *rs)
{
    long long deadline = now_ms() + READY_LIMIT_MS;
    while (now_ms() < deadline) {
        if (waitpid(rs->pid, NULL, WNOHANG) == rs->pid) {
            rs->pid = 0;
            return EXITED_EARLY;
        }
        if (answers_ping(rs))
            return 0;
        sleep_ms(20);
    }
    reap(rs);
    return -ETIMEDOUT;
}

static int launch(struct redis_server *rs)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        exec_redis(rs, parent);
    rs->pid = pid;
    return wait_ready(rs);
}

static int make_dir(struct redis_server *rs)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    int n = snprintf(rs->dir, sizeof(rs->dir), "%s/pds-redis-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(rs->dir) || mkdtemp(rs->dir) == NULL) {
        rs->dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

int redis_server_start(struct redis_server *rs)
{
    int err = rs->dir[0] == '\0' ? make_dir(rs) : 0;
    for (int i = 0; err == 0 && i < START_ATTEMPTS; i++) {
        int port = free_port();
        if (port < 0)
            return port;
        rs->port = port;
        err = launch(rs);
        if (err != EXITED_EARLY)
            return err;
        err = 0;
    }
    return err != 0 ? err : EXITED_EARLY;
}

static int write_conf(struct redis_server *rs, const char *const conf[])
{
    char path[300];
    conf_path(rs, path, sizeof(path));
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -errno;
    for (size_t i = 0; conf[i] != NULL; i++)
        fprintf(f, "%s\n", conf[i]);
    fprintf(f, "user %s on >%s ~* +@all\n", REDIS_SERVER_HARNESS_USER,
            REDIS_SERVER_HARNESS_PASSWORD);
    rs->has_conf = 1;
    return fclose(f) == 0 ? 0 : -EIO;
}

int redis_server_start_conf(struct redis_server *rs, const char *const conf[])
{
    int err = rs->dir[0] == '\0' ? make_dir(rs) : 0;
    if (err == 0 && conf != NULL)
        err = write_conf(rs, conf);
    return err != 0 ? err : redis_server_start(rs);
}

int redis_server_restart(struct redis_server *rs)
{
    if (rs->pid > 0)
        return -EBUSY;
    if (rs->port <= 0 || rs->dir[0] == '\0')
        return -EINVAL;
    int err = EXITED_EARLY;
    for (int i = 0; err == EXITED_EARLY && i < START_ATTEMPTS; i++) {
        if (i > 0)
            sleep_ms(100); /* the old socket may linger for a moment */
        err = launch(rs);
    }
    return err;
}

int redis_server_stop(struct redis_server *rs)
{
    if (rs->pid <= 0)
        return 0;
    kill(rs->pid, SIGTERM);
    kill(rs->pid, SIGCONT); /* a frozen Redis cannot act on SIGTERM */
    long long deadline = now_ms() + STOP_LIMIT_MS;
    while (now_ms() < deadline) {
        pid_t got = waitpid(rs->pid, NULL, WNOHANG);
        if (got == rs->pid || (got < 0 && errno == ECHILD)) {
            rs->pid = 0;
            return 0;
        }
        sleep_ms(10);
    }
    reap(rs);
    return -ETIMEDOUT;
}

int redis_server_start_aof(struct redis_server *rs)
{
    rs->aof = 1;
    return redis_server_start(rs);
}

int redis_server_kill(struct redis_server *rs)
{
    if (rs->pid <= 0)
        return -ESRCH;
    reap(rs);
    return 0;
}

int redis_server_freeze(struct redis_server *rs)
{
    int status;
    if (rs->pid <= 0 || kill(rs->pid, SIGSTOP) != 0)
        return -ESRCH;
    /* Wait until it has really stopped, so the test's timing starts from a frozen server. */
    while (waitpid(rs->pid, &status, WUNTRACED) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return WIFSTOPPED(status) ? 0 : -ESRCH;
}

int redis_server_thaw(struct redis_server *rs)
{
    if (rs->pid <= 0 || kill(rs->pid, SIGCONT) != 0)
        return -ESRCH;
    return 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        /* With the append-only file on, Redis 7 keeps it in a directory of its own. */
        if (unlink(path) != 0)
            remove_dir(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

void redis_server_destroy(struct redis_server *rs)
{
    redis_server_stop(rs);
    if (rs->dir[0] != '\0')
        remove_dir(rs->dir);
    rs->dir[0] = '\0';
    rs->has_conf = 0;
}

char *redis_server_url(const struct redis_server *rs, char *out, size_t size)
{
    snprintf(out, size, "redis://127.0.0.1:%d", rs->port);
    return out;
}

static redisContext *connect_to(const struct redis_server *rs)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (c != NULL && c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK)
        return c;
    if (c != NULL)
        redisFree(c);
    return NULL;
}

long long redis_server_query(const struct redis_server *rs, const char *command)
{
    redisContext *c = connect_to(rs);
    redisReply *r = c != NULL ? redisCommand(c, command) : NULL;
    long long n = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        n = (long long)r->elements;
    else if (r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
        n = 0;
    if (r != NULL)
        freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return n;
}

/* A growable byte string for the dump. */
struct bytes {
    char *p;
    size_t len, cap;
    bool failed;
};

static void bytes_raw(struct bytes *b, const char *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* One value and a newline after it. */
static void bytes_add(struct bytes *b, const char *p, size_t n)
{
    bytes_raw(b, p, n);
    bytes_raw(b, "\n", 1);
}

static void add_reply(struct bytes *b, const redisReply *r)
{
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR)
        bytes_add(b, r->str, r->len);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        add_reply(b, r->element[i]);
}

/* The command that reads every value a key of this type holds. */
static const char *reader_of(const char *type)
{
    static const char *const readers[][2] = {
        {"string", "GET %b"},        {"hash", "HGETALL %b"},
        {"stream", "XRANGE %b - +"}, {"zset", "ZRANGE %b 0 -1 WITHSCORES"},
        {"list", "LRANGE %b 0 -1"},  {"set", "SMEMBERS %b"},
    };
    for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++)
        if (strcmp(type, readers[i][0]) == 0)
            return readers[i][1];
    return NULL;
}

char *redis_server_dump(const struct redis_server *rs, size_t *len)
{
    struct bytes b = {0};
    redisContext *c = connect_to(rs);
    redisReply *keys = c != NULL ? redisCommand(c, "KEYS *") : NULL;
    for (size_t i = 0; keys != NULL && keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        redisReply *t = redisCommand(c, "TYPE %b", k->str, k->len);
        const char *reader = t != NULL && t->type == REDIS_REPLY_STATUS ? reader_of(t->str) : NULL;
        bytes_add(&b, k->str, k->len);
        add_reply(&b, t);
        /* A type nothing here reads is dumped as its name only, and marked so. */
        if (reader == NULL)
            bytes_add(&b, "(unread type)", 13);
        redisReply *v = reader != NULL ? redisCommand(c, reader, k->str, k->len) : NULL;
        add_reply(&b, v);
        if (v != NULL)
            freeReplyObject(v);
        if (t != NULL)
            freeReplyObject(t);
    }
    bool ok = keys != NULL && keys->type == REDIS_REPLY_ARRAY && !b.failed;
    if (keys != NULL)
        freeReplyObject(keys);
    if (c != NULL)
        redisFree(c);
    if (!ok) {
        free(b.p);
        return NULL;
    }
    if (b.p == NULL)
        b.p = calloc(1, 1);
    *len = b.len;
    return b.p;
}

char *redis_server_read_aof(const struct redis_server *rs, size_t *len)
{
    struct bytes b = {0};
    char dir[300], path[600];
    snprintf(dir, sizeof(dir), "%s/appendonlydir", rs->dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        char chunk[8192];
        size_t n;
        while (f != NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            bytes_raw(&b, chunk, n);
        if (f != NULL)
            fclose(f);
    }
    if (d != NULL)
        closedir(d);
    if (b.failed || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
