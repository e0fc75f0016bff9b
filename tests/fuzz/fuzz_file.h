/* The parsers under test read files by path, so each fuzz input is written to a scratch
 * file of this process first, in a folder of its own (nothing else lies beside the file,
 * such as a config.json that a loader would read), in /dev/shm when there is one (memory
 * speed), else /tmp. */
#ifndef EMBER_FUZZ_FILE_H
#define EMBER_FUZZ_FILE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[64];

/* At exit: the folder, once the targets have unlinked their files. */
static inline void fuzz_remove_dir(void)
{
    rmdir(fuzz_dir);
}

/* Returns the path of a file holding data[0..size), named by `tag` (one file per tag and
 * process, rewritten on every call; the caller unlinks it when done). Aborts when the
 * scratch folder is unusable: a fuzzer that cannot write its input tests nothing. */
static inline const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[8][128];
    static const char *tags[8];
    static int used;
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/ember-fuzz-%ld",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
        if (mkdir(fuzz_dir, 0700) != 0 && errno != EEXIST)
            abort();
        atexit(fuzz_remove_dir);
    }
    int slot = 0;
    while (slot < used && strcmp(tags[slot], tag) != 0)
        slot++;
    if (slot == used) {
        if (used == 8)
            abort();
        snprintf(path[slot], sizeof path[slot], "%s/%s", fuzz_dir, tag);
        tags[slot] = tag;
        used++;
    }
    FILE *fp = fopen(path[slot], "wb");
    if (!fp)
        abort();
    if (size && fwrite(data, 1, size, fp) != size)
        abort();
    if (fclose(fp) != 0)
        abort();
    return path[slot];
}

#endif
