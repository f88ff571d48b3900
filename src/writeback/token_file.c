#include "pdstrace/writeback.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"

#define TOKEN_MAX 4096

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A token is one line of visible ASCII: anything else would break the header line. */
static bool token_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '!' || s[i] > '~')
            return false;
    }
    return n > 0;
}

static int read_all(int fd, struct buf *out)
{
    char chunk[512];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got == 0 ? 0 : ERR_CONFIG;
        if (buf_append(out, chunk, (size_t)got) != 0)
            return ERR_CONFIG;
    }
}

int writeback_token_load(const char *path, struct buf *out)
{
    buf_init(out, TOKEN_MAX);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ERR_CONFIG;
    int err = read_all(fd, out);
    close(fd);
    size_t n = buf_len(out);
    while (n > 0 && is_space(buf_cstr(out)[n - 1]))
        n--;
    buf_truncate(out, n);
    if (!err && !token_valid(buf_cstr(out), n))
        err = ERR_CONFIG;
    if (err)
        buf_wipe(out);
    return err;
}
