#include "http_util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "pdstrace/buf.h"

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    return buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

static struct curl_slist *make_headers(const char *const *headers)
{
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        list = curl_slist_append(list, headers[i]);
    return list;
}

int http_do(int port, const char *method, const char *path, const char *const *headers,
            const char *body, struct http_reply *out)
{
    char url[512];
    struct buf b, h;
    buf_init(&b, 64 << 20);
    buf_init(&h, 1 << 20);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *list = make_headers(headers);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    out->status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    out->body_len = buf_len(&b);
    out->body = buf_len(&b) > 0 ? buf_steal(&b) : strdup("");
    out->headers = buf_len(&h) > 0 ? buf_steal(&h) : strdup("");
    return rc == CURLE_OK ? 0 : -1;
}

void http_reply_free(struct http_reply *r)
{
    free(r->body);
    free(r->headers);
    r->body = NULL;
    r->headers = NULL;
}

const char *http_reply_header(const struct http_reply *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = (size_t)(end - v) < size - 1 ? (size_t)(end - v) : size - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        line = end + 2;
    }
    return NULL;
}

int tcp_connect(int port, unsigned recv_timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {recv_timeout_ms / 1000, (recv_timeout_ms % 1000) * 1000};
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tcp_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *at = hay; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    return n;
}

long tcp_recv_until(int fd, char *out, size_t size, const char *needle, int count)
{
    size_t got = 0;
    out[0] = '\0';
    while (got + 1 < size) {
        ssize_t n = recv(fd, out + got, size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        out[got] = '\0';
        if (needle != NULL && count_of(out, needle) >= count)
            break;
    }
    return got > 0 ? (long)got : -1;
}

long tcp_recv_all(int fd, char *out, size_t size)
{
    return tcp_recv_until(fd, out, size, NULL, 0);
}

int tcp_peer_closed(int fd)
{
    char c[4096];
    ssize_t n;
    /* Whatever is still queued (a last response) is read past first. */
    while ((n = recv(fd, c, sizeof(c), 0)) > 0)
        ;
    return n == 0 || errno == ECONNRESET;
}
