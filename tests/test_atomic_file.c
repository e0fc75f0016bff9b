/* The atomic file writer: content arrives whole, an abort leaves the old file and no
 * temporary behind, and failures name the file. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "testlib.h"

static const char *tmp_file(const char *name)
{
    static char buf[2][512];
    static int next;
    char *out = buf[next];
    next = (next + 1) % 2;
    snprintf(out, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return out;
}

static size_t read_all(const char *path, unsigned char *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, cap, fp);
    fclose(fp);
    return n;
}

/* Names in the folder other than . and .. */
static int count_entries(void)
{
    DIR *dir = opendir(test_tmpdir());
    int n = 0;
    for (struct dirent *de; dir && (de = readdir(dir));)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    if (dir)
        closedir(dir);
    return n;
}

int main(void)
{
    const char *path = tmp_file("out.bin");
    size_t big = 3 * 100000 + 17; /* beyond the internal buffer, not a multiple of it */
    unsigned char *want = malloc(big), *got = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        want[i] = (unsigned char)(i * 131 + (i >> 9));

    /* Small writes, then one larger than the buffer, then small again. */
    em_atomic_file *f = em_atomic_open(path);
    CHECK(f != NULL);
    CHECK(count_entries() == 1); /* the temporary file, not yet the target */
    size_t pos = 0;
    for (int i = 0; i < 1000; i++, pos += 7)
        CHECK(em_atomic_write(f, want + pos, 7) == EM_OK);
    CHECK(em_atomic_write(f, want + pos, 200000) == EM_OK);
    pos += 200000;
    CHECK(em_atomic_write(f, want + pos, big - pos) == EM_OK);
    CHECK(access(path, F_OK) != 0);
    CHECK(em_atomic_commit(f) == EM_OK);
    CHECK(read_all(path, got, big + 1) == big && memcmp(got, want, big) == 0);
    CHECK(count_entries() == 1);

    /* New files get the permissions the umask allows, not mkstemp's 0600. */
    struct stat st;
    mode_t mask = umask(022);
    umask(mask);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == (0666 & ~mask));

    /* An abort keeps the old content and removes the temporary file. */
    f = em_atomic_open(path);
    CHECK(em_atomic_write(f, "new", 3) == EM_OK);
    em_atomic_abort(f);
    CHECK(read_all(path, got, big + 1) == big && memcmp(got, want, big) == 0);
    CHECK(count_entries() == 1);

    /* Whole-buffer replacement. */
    CHECK(em_atomic_write_file(path, "short", 5) == EM_OK);
    CHECK(read_all(path, got, big + 1) == 5 && memcmp(got, "short", 5) == 0);
    CHECK(em_atomic_write_file(path, "", 0) == EM_OK);
    CHECK(read_all(path, got, big + 1) == 0);

    /* Failures name the file. */
    const char *nowhere = tmp_file("missing/dir/out.bin");
    CHECK(em_atomic_open(nowhere) == NULL);
    CHECK_ERROR_CONTAINS(nowhere);
    CHECK(em_atomic_write_file(nowhere, "x", 1) == EM_ERR);
    CHECK_ERROR_CONTAINS("No such file");
    CHECK(em_atomic_open(tmp_file("dir/")) == NULL);
    CHECK_ERROR_CONTAINS("folder");
    /* Renaming a file over a folder fails at commit, leaving nothing behind. */
    const char *folder = tmp_file("a_folder");
    CHECK(mkdir(folder, 0755) == 0);
    CHECK(em_atomic_write_file(folder, "x", 1) == EM_ERR);
    CHECK_ERROR_CONTAINS("cannot rename");
    CHECK(count_entries() == 2);
    rmdir(folder);

    unlink(path);
    rmdir(test_tmpdir());
    free(want);
    free(got);
    return test_finish();
}
