/* Clocks, a seeded generator, checked number parsing, hashing, JSON escaping (always valid UTF-8
 * out), character-boundary string copies, mkdir -p and atomic file writes used everywhere. */
#include "sb/util.h"

#include "sb/err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t sb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sb_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sb_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

size_t sb_cdf_index(const double *cdf, size_t n, double u)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void sb_rng_seed(struct sb_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x = sb_mix64(x);
        r->s[i] = x;
    }
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sb_rng_next(struct sb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sb_rng_uniform(struct sb_rng *r)
{
    return (double)(sb_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t sb_rng_below(struct sb_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the bias is below 2^-64 * n, irrelevant here. */
    return (uint64_t)(((unsigned __int128)sb_rng_next(r) * n) >> 64);
}

uint64_t sb_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int sb_parse_ll(const char *s, long long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int sb_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int sb_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    if (!s)
        return -1;
    for (size_t i = 0; i < SB_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int sb_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    double mult = 1;
    if (*end) {
        static const struct {
            const char *suffix;
            double mult;
        } units[] = {
            {"b", 1},
            {"k", 1024.0},
            {"kb", 1024.0},
            {"kib", 1024.0},
            {"m", 1048576.0},
            {"mb", 1048576.0},
            {"mib", 1048576.0},
            {"g", 1073741824.0},
            {"gb", 1073741824.0},
            {"gib", 1073741824.0},
            {"t", 1099511627776.0},
            {"tb", 1099511627776.0},
            {"tib", 1099511627776.0},
        };
        size_t i;
        for (i = 0; i < SB_ARRAY_SIZE(units); i++) {
            if (strcasecmp(end, units[i].suffix) == 0) {
                mult = units[i].mult;
                break;
            }
        }
        if (i == SB_ARRAY_SIZE(units))
            return -1;
    }
    double bytes = v * mult;
    if (bytes > 1.8e19)
        return -1;
    *out = (uint64_t)llround(bytes);
    return 0;
}

/*
 * The length of the well-formed UTF-8 character at s[0..len) (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when there is none; then *bad is the length of the
 * maximal subpart to replace with one U+FFFD (at least 1), as Unicode's "substitution of maximal
 * subparts" and the WHATWG decoder do.
 */
static size_t utf8_char_len(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    *bad = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    size_t i = 1;
    for (; i < need && i < len; i++) {
        unsigned char b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            break;
    }
    if (i == need)
        return need;
    *bad = i;
    return 0;
}

size_t sb_json_escape(char *dst, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (dst && n + 1 < cap)                                                                    \
            dst[n] = (c);                                                                          \
        n++;                                                                                       \
    } while (0)
    for (size_t i = 0; i < len; i++) {
        /* A run of bytes written as they are, copied at once: prompts are mostly such runs, and
           a byte at a time was the cost of building a 100k-token body (208 MB/s). */
        size_t e = i;
        while (e < len && (unsigned char)s[e] >= 0x20 && (unsigned char)s[e] < 0x80 &&
               s[e] != '"' && s[e] != '\\')
            e++;
        if (e > i) {
            size_t run = e - i;
            if (dst && n + 1 < cap)
                memcpy(dst + n, s + i, run < cap - 1 - n ? run : cap - 1 - n);
            n += run;
            if (e == len)
                break;
            i = e;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t bad, k = utf8_char_len((const unsigned char *)s + i, len - i, &bad);
            if (k == 0) { /* not UTF-8: U+FFFD keeps the JSON text valid (RFC 8259 section 8.1) */
                PUT('\xef');
                PUT('\xbf');
                PUT('\xbd');
                k = bad;
            } else {
                for (size_t j = 0; j < k; j++)
                    PUT(s[i + j]);
            }
            i += k - 1;
            continue;
        }
        switch (c) {
        case '"':
            PUT('\\');
            PUT('"');
            break;
        case '\\':
            PUT('\\');
            PUT('\\');
            break;
        case '\n':
            PUT('\\');
            PUT('n');
            break;
        case '\r':
            PUT('\\');
            PUT('r');
            break;
        case '\t':
            PUT('\\');
            PUT('t');
            break;
        default:
            if (c < 0x20) {
                PUT('\\');
                PUT('u');
                PUT('0');
                PUT('0');
                PUT(hex[c >> 4]);
                PUT(hex[c & 15]);
            } else {
                PUT((char)c);
            }
        }
    }
#undef PUT
    if (dst && cap > 0)
        dst[n < cap ? n : cap - 1] = '\0';
    return n;
}

static bool is_utf8_continuation(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

size_t sb_utf8_truncate(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    /* A cut at max splits a character when the byte after it continues one: back up to that
       character's first byte (at most 3 back). Stray continuation bytes are no character. */
    size_t i = max;
    while (i > 0 && max - i < 3 && is_utf8_continuation(s[i]))
        i--;
    return is_utf8_continuation(s[i]) ? max : i;
}

size_t sb_utf8_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return 0;
    size_t n = sb_utf8_truncate(src, len, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

long sb_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -1;
    }
    return (long)rl.rlim_cur;
}

static int two_digits(const char *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return -1;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 0;
}

int sb_parse_iso8601(const char *s, double *out)
{
    int y1, y2, mo, d, h, mi, sec;
    if (strlen(s) < 19 || two_digits(s, &y1) || two_digits(s + 2, &y2) || s[4] != '-' ||
        two_digits(s + 5, &mo) || s[7] != '-' || two_digits(s + 8, &d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || two_digits(s + 11, &h) || s[13] != ':' ||
        two_digits(s + 14, &mi) || s[16] != ':' || two_digits(s + 17, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y1 * 100 + y2 - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    const char *p = s + 19;
    const char *frac = "";
    int frac_len = 0;
    if (*p == '.' || *p == ',') {
        frac = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        frac_len = (int)(p - frac);
        if (frac_len == 0 || frac_len > 30)
            return -1;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, sign = *p == '+' ? 1 : -1;
        if (two_digits(p + 1, &oh))
            return -1;
        p += 3;
        if (*p == ':')
            p++;
        if (two_digits(p, &om) || oh > 23 || om > 59)
            return -1;
        p += 2;
        offset = sign * (oh * 3600L + om * 60L);
    }
    if (*p)
        return -1;
    /* Whole seconds and the fraction's digits as one decimal, read once: the same double as
       the number written out (as metrics.jsonl's reader does it). */
    char text[80];
    snprintf(text, sizeof(text), "%lld.%.*s", (long long)timegm(&tm) - offset, frac_len, frac);
    *out = strtod(text, NULL);
    return 0;
}

int sb_mkdir_p(const char *path, struct sb_err *err)
{
    char buf[4096];
    if (!path[0])
        return sb_err_set(err, "cannot create directory '': empty path");
    if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf))
        return sb_err_set(err, "path too long: '%s'", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return sb_err_errno(err, errno, "cannot create directory '%s'", buf);
        *p = saved;
        if (!saved)
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sb_err_set(err, "cannot create directory '%s': not a directory", path);
    return 0;
}

/* fsyncs the directory holding path so that a rename into it is on disk; best effort. */
static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int sb_write_file_atomic(const char *path, const char *data, size_t len, struct sb_err *err)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return sb_err_set(err, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sb_err_errno(err, errno, "cannot write '%s'", path);
    int rc = -1;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, data + done, len - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            sb_err_errno(err, w < 0 ? errno : EIO, "cannot write '%s'", path);
            goto out;
        }
    }
    /* The data must be on disk before the rename makes it the file; EINVAL/EROFS: a file
       system that cannot sync. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        sb_err_errno(err, errno, "cannot write '%s'", path);
        goto out;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        sb_err_errno(err, errno, "cannot write '%s'", path);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        sb_err_errno(err, errno, "cannot rename '%s' to '%s'", tmp, path);
        goto out;
    }
    sync_parent_dir(path);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(tmp);
    return rc;
}

int sb_doubles_push(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        double *nv = realloc(*v, nc * sizeof(double));
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int sb_url_check_no_credentials(const char *value, struct sb_err *err)
{
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, ",");
        const char *scheme = NULL;
        for (const char *q = p; q + 3 <= p + n; q++)
            if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
                scheme = q + 3;
                break;
            }
        if (scheme) {
            size_t auth = strcspn(scheme, "/?#,");
            const char *at = memchr(scheme, '@', auth);
            if (at) {
                const char *host = at + 1;
                return sb_err_set(err,
                                  "URL '%.*s<credentials>@%.*s' carries credentials before its "
                                  "host; they would be written to config.yaml, run.json and the "
                                  "logs: give an API key with --api-key-env instead",
                                  (int)(scheme - p), p, (int)(p + n - host), host);
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}
