#include "io/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/error.h"

/* Checkpoints write many small tensors (biases, norms); gathering them saves a system
 * call each. */
#define ATOMIC_BUFFER_BYTES (64 * 1024)

struct em_atomic_file {
    int fd;
    int failed;
    char *path;
    char *tmp_path;
    size_t used;
    unsigned char buffer[ATOMIC_BUFFER_BYTES];
};

static atomic_uint temp_counter;

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    if (out)
        memcpy(out, s, n);
    return out;
}

/* The folder holding path ("." when path has no slash). */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return copy_string(".");
    if (slash == path)
        return copy_string("/");
    size_t n = (size_t)(slash - path);
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, path, n);
        out[n] = '\0';
    }
    return out;
}

/* Temporary files of `path` left by processes that died mid-write (SIGKILL, a power
 * cut) would pile up beside a checkpoint written every few minutes. A name carries its
 * writer's pid; one whose process no longer exists is removed. A live process (or a
 * reused pid) keeps its file: at worst a stale file stays. */
static void sweep_stale_temporaries(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = parent_dir(path);
    size_t prefix_len = strlen(base) + 6;
    char *prefix = malloc(prefix_len + 1);
    DIR *d = dir && prefix ? opendir(dir) : NULL;
    if (prefix)
        snprintf(prefix, prefix_len + 1, ".%s.tmp.", base);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, prefix_len) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + prefix_len, &end, 10);
        if (pid <= 0 || *end != '.' || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
    free(dir);
    free(prefix);
}

static void free_file(em_atomic_file *f)
{
    free(f->path);
    free(f->tmp_path);
    free(f);
}

em_atomic_file *em_atomic_open(const char *path)
{
    if (!path || !*path) {
        em_error("atomic write: empty file name");
        return NULL;
    }
    size_t len = strlen(path);
    if (path[len - 1] == '/') {
        em_error("%s: is a folder name, not a file name", path);
        return NULL;
    }
    em_atomic_file *f = calloc(1, sizeof *f);
    if (!f) {
        em_error("%s: out of memory", path);
        return NULL;
    }
    f->fd = -1;
    f->path = copy_string(path);
    /* A hidden sibling: same folder (rename must not cross file systems), and a name
     * that directory listings and globs for the target skip. */
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t tmp_cap = len + 64;
    f->tmp_path = malloc(tmp_cap);
    if (!f->path || !f->tmp_path) {
        free_file(f);
        em_error("%s: out of memory", path);
        return NULL;
    }
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = atomic_fetch_add(&temp_counter, 1u);
        snprintf(f->tmp_path, tmp_cap, "%.*s.%s.tmp.%ld.%u", (int)dir_len, path,
                 path + dir_len, (long)getpid(), n);
        /* 0666 so that the umask decides the final permissions, as for any new file. */
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        em_error("%s: cannot create temporary file %s: %s", path, f->tmp_path, strerror(errno));
        free_file(f);
        return NULL;
    }
    sweep_stale_temporaries(path);
    return f;
}

static int write_all(em_atomic_file *f, const unsigned char *p, size_t n)
{
    while (n > 0) {
        /* Some kernels cap one write near 2 GiB; smaller pieces are as fast. */
        size_t piece = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(f->fd, p, piece);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            f->failed = 1;
            return em_error("%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return EM_OK;
}

static int flush_buffer(em_atomic_file *f)
{
    if (f->used == 0)
        return EM_OK;
    size_t n = f->used;
    f->used = 0;
    return write_all(f, f->buffer, n);
}

int em_atomic_write(em_atomic_file *f, const void *data, size_t n)
{
    if (f->failed)
        return EM_ERR;
    if (n == 0)
        return EM_OK;
    if (n <= sizeof f->buffer - f->used) {
        memcpy(f->buffer + f->used, data, n);
        f->used += n;
        return EM_OK;
    }
    if (flush_buffer(f) != EM_OK)
        return EM_ERR;
    if (n < sizeof f->buffer) {
        memcpy(f->buffer, data, n);
        f->used = n;
        return EM_OK;
    }
    return write_all(f, data, n);
}

static int sync_dir(const char *path)
{
    char *dir = parent_dir(path);
    if (!dir)
        return em_error("%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        em_error("%s: cannot open folder %s to flush it: %s", path, dir, strerror(errno));
        free(dir);
        return EM_ERR;
    }
    int rc = EM_OK;
    /* Some file systems cannot flush a folder and say so; the rename stands anyway. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        rc = em_error("%s: flushing folder %s failed: %s", path, dir, strerror(errno));
    close(fd);
    free(dir);
    return rc;
}

int em_atomic_commit(em_atomic_file *f)
{
    if (!f)
        return EM_ERR;
    if (f->failed || flush_buffer(f) != EM_OK) {
        em_atomic_abort(f);
        return EM_ERR;
    }
    if (fsync(f->fd) != 0) {
        em_error("%s: flushing to disk failed: %s", f->path, strerror(errno));
        em_atomic_abort(f);
        return EM_ERR;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        em_error("%s: closing failed: %s", f->path, strerror(errno));
        em_atomic_abort(f);
        return EM_ERR;
    }
    if (rename(f->tmp_path, f->path) != 0) {
        em_error("%s: cannot rename %s over it: %s", f->path, f->tmp_path, strerror(errno));
        em_atomic_abort(f);
        return EM_ERR;
    }
    int rc = sync_dir(f->path);
    free_file(f);
    return rc;
}

void em_atomic_abort(em_atomic_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    unlink(f->tmp_path);
    free_file(f);
}

int em_atomic_write_file(const char *path, const void *data, size_t n)
{
    em_atomic_file *f = em_atomic_open(path);
    if (!f)
        return EM_ERR;
    em_atomic_write(f, data, n);
    return em_atomic_commit(f);
}
