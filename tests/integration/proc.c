/* Process and HTTP helpers for integration tests (see proc.h). */
#include "proc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb/buf.h"

double sb_test_time_scale(void)
{
    const char *v = getenv("SB_TEST_TIME_SCALE");
    double s = v ? strtod(v, NULL) : 1.0;
    return s >= 1.0 ? s : 1.0;
}

void sb_test_exec(const char *const *argv)
{
    /* make check-valgrind: every sparkbench child runs under the wrapper; other programs (bash,
       openssl) as they are. */
    const char *wrap = getenv("SB_TEST_VALGRIND");
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (wrap && *wrap && strcmp(base, "sparkbench") == 0) {
        const char *w[128];
        int n = 0;
        w[n++] = wrap;
        for (int i = 0; argv[i] && n < 127; i++)
            w[n++] = argv[i];
        w[n] = NULL;
        execv(wrap, (char *const *)w);
        _exit(127);
    }
    execv(argv[0], (char *const *)argv);
}

int sb_proc_start_mock(struct sb_proc *p, const char *bin, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "mock";
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        sb_test_exec(argv);
        _exit(127);
    }
    close(pipefd[1]);
    p->pid = pid;
    p->out_fd = pipefd[0];
    p->port = 0;
    char line[32];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        struct pollfd pfd = {pipefd[0], POLLIN, 0};
        if (poll(&pfd, 1, (int)(30000 * sb_test_time_scale())) <= 0)
            break;
        ssize_t r = read(pipefd[0], line + len, 1);
        if (r <= 0)
            break;
        if (line[len] == '\n') {
            line[len] = '\0';
            p->port = atoi(line);
            return p->port > 0 ? 0 : -1;
        }
        len++;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int sb_proc_stop(struct sb_proc *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    int status;
    /* A guard, not a timing assertion: a process that ignores the signal for a minute is hung. */
    int tries = (int)(6000 * sb_test_time_scale());
    for (int i = 0; i < tries; i++) {
        pid_t w = waitpid(p->pid, &status, WNOHANG);
        if (w == p->pid)
            break;
        if (w < 0)
            return -1;
        usleep(10000);
        if (i == tries - 1) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
        }
    }
    p->pid = 0;
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->out_fd = -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static char *slurp(int fd)
{
    struct sb_buf b;
    sb_buf_init(&b, 64u << 20);
    char tmp[4096];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof(tmp))) > 0)
        sb_buf_add(&b, tmp, (size_t)r);
    sb_buf_add(&b, "", 0);
    return sb_buf_detach(&b, NULL);
}

int sb_proc_run(const char *const *argv, char **out, char **err)
{
    return sb_proc_run_limit(argv, out, err, 0);
}

int sb_proc_run_limit(const char *const *argv, char **out, char **err, double limit_s)
{
    char outpath[] = "/tmp/sbtest-out-XXXXXX", errpath[] = "/tmp/sbtest-err-XXXXXX";
    int ofd = mkstemp(outpath), efd = mkstemp(errpath);
    if (ofd < 0 || efd < 0)
        return -1;
    unlink(outpath);
    unlink(errpath);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(ofd, 1);
        dup2(efd, 2);
        sb_test_exec(argv);
        _exit(127);
    }
    int status = 0;
    bool killed = false;
    limit_s *= sb_test_time_scale();
    if (limit_s > 0) {
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (waitpid(pid, &status, WNOHANG) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >
                limit_s) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                killed = true;
                break;
            }
            usleep(10000);
        }
    } else {
        waitpid(pid, &status, 0);
    }
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    if (out)
        *out = slurp(ofd);
    if (err)
        *err = slurp(efd);
    close(ofd);
    close(efd);
    if (killed)
        return -2;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sb_buf *b = arg;
    return sb_buf_add(b, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

int sb_http(const char *method, const char *url, const char *body, struct sb_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct sb_buf b, h;
    sb_buf_init(&b, 64u << 20);
    sb_buf_init(&h, 1u << 20);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    r->curl_rc = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    sb_buf_add(&b, "", 0);
    sb_buf_add(&h, "", 0);
    r->body = sb_buf_detach(&b, &r->len);
    r->headers = sb_buf_detach(&h, NULL);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return 0;
}

void sb_http_resp_release(struct sb_http_resp *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

const char *sb_url(char *buf, size_t cap, int port, const char *path)
{
    snprintf(buf, cap, "http://127.0.0.1:%d%s", port, path);
    return buf;
}

int sb_test_split_sse(const char *body, char ***events)
{
    int n = 0, cap = 16;
    char **v = malloc(sizeof(char *) * (size_t)cap);
    const char *p = body;
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == cap) {
            cap *= 2;
            v = realloc(v, sizeof(char *) * (size_t)cap);
        }
        v[n++] = strndup(p, len);
        p = end ? end + 2 : NULL;
    }
    *events = v;
    return n;
}

void sb_strv_free(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

char *sb_test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sb_buf b;
    sb_buf_init(&b, 256u << 20);
    char tmp[8192];
    size_t r;
    while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
        sb_buf_add(&b, tmp, r);
    fclose(f);
    sb_buf_add(&b, "", 0);
    return sb_buf_detach(&b, NULL);
}

int sb_test_count(const char *hay, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + nl, needle))
        n++;
    return n;
}

static size_t on_stream_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sb_stream *s = arg;
    return sb_buf_add(&s->body, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

void sb_stream_init(struct sb_stream *s, const char *url, const char *body)
{
    memset(s, 0, sizeof(*s));
    sb_buf_init(&s->body, 64u << 20);
    CURL *c = curl_easy_init();
    s->easy = c;
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, (struct curl_slist *)s->headers);
    curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_PRIVATE, s);
}

void sb_stream_release(struct sb_stream *s)
{
    curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->headers);
    sb_buf_release(&s->body);
}

void sb_streams_run(struct sb_stream *s, int n, bool (*tick)(struct sb_stream *s, int n, void *arg),
                    void *arg)
{
    CURLM *m = curl_multi_init();
    for (int i = 0; i < n; i++)
        curl_multi_add_handle(m, s[i].easy);
    int running = n;
    while (running > 0) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct sb_stream *st;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&st);
            st->curl_rc = (int)msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &st->status);
            st->done = true;
        }
        if (tick && tick(s, n, arg))
            tick = NULL;
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++)
        curl_multi_remove_handle(m, s[i].easy);
    curl_multi_cleanup(m);
}

cJSON **sb_test_read_jsonl(const char *path, int *n)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("cannot read %s", path);
    int cap = 64;
    cJSON **v = malloc(sizeof(cJSON *) * (size_t)cap);
    assert_non_null(v);
    *n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (!j)
            fail_msg("unparseable line in %s: %.200s", path, line);
        if (*n == cap) {
            cap *= 2;
            v = realloc(v, sizeof(cJSON *) * (size_t)cap);
            assert_non_null(v);
        }
        v[(*n)++] = j;
    }
    free(text);
    return v;
}

void sb_test_free_jsonl(cJSON **v, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(v[i]);
    free(v);
}

char *sb_test_tmpdir(const char *parent, const char *tag)
{
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/sbtest-%s-XXXXXX", parent, tag);
    char *d = mkdtemp(tmpl);
    if (!d)
        fail_msg("cannot create %s: %s", tmpl, strerror(errno));
    return strdup(d);
}

void sb_test_rm_rf(const char *dir)
{
    const char *argv[] = {"/bin/rm", "-rf", dir, NULL};
    sb_proc_run(argv, NULL, NULL);
}

void sb_test_disk_of(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    char sys[128], real[512];
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    if (!realpath(sys, real))
        return;
    char part[600];
    snprintf(part, sizeof(part), "%s/partition", real);
    if (access(part, F_OK) == 0) {
        char *slash = strrchr(real, '/');
        if (slash)
            *slash = '\0';
    }
    const char *name = strrchr(real, '/');
    snprintf(out, cap, "%.63s", name ? name + 1 : real);
}

struct cJSON *sb_test_read_json(const char *path)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("cannot read '%s'", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j)
        fail_msg("'%s' is not JSON", path);
    return j;
}

double sb_test_num(const struct cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

long long sb_test_int(const struct cJSON *j, const char *k)
{
    double v = sb_test_num(j, k);
    return isnan(v) ? -1 : (long long)v;
}

static int by_seq(const void *a, const void *b)
{
    double x = sb_test_num(*(const cJSON *const *)a, "seq");
    double y = sb_test_num(*(const cJSON *const *)b, "seq");
    return x < y ? -1 : x > y;
}

cJSON **sb_test_read_jsonl_by_seq(const char *path, int *n)
{
    cJSON **v = sb_test_read_jsonl(path, n);
    qsort(v, (size_t)*n, sizeof(*v), by_seq);
    return v;
}

char **sb_test_csv_lines(const char *path, int *n)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("'%s' was not written", path);
    char **v = NULL;
    *n = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        v = realloc(v, (size_t)(*n + 1) * sizeof(*v));
        v[(*n)++] = strdup(l);
    }
    free(text);
    return v;
}

int sb_test_listen_loopback(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

bool sb_test_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

const char *sb_test_str(const struct cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

bool sb_test_true(const struct cJSON *j, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, k));
}

void sb_run_paths_init(struct sb_run_paths *p, const char *srcdir, const char *tag, int port,
                       const char *api)
{
    p->dir = sb_test_tmpdir("/tmp", tag);
    snprintf(p->out, sizeof(p->out), "%s/run", p->dir);
    snprintf(p->metrics, sizeof(p->metrics), "%s/metrics.jsonl", p->out);
    snprintf(p->runjson, sizeof(p->runjson), "%s/run.json", p->out);
    snprintf(p->prompts, sizeof(p->prompts), "%s/inputs/prompts", srcdir);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d%s", port, api);
}

void sb_run_paths_release(struct sb_run_paths *p)
{
    sb_test_rm_rf(p->dir);
    free(p->dir);
}
