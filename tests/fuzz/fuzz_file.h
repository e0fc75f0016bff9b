/* The parsers under test read files by path, so each fuzz input is written to a scratch
 * file of this process first: in /dev/shm when there is one (memory speed), else /tmp. */
#ifndef EMBER_FUZZ_FILE_H
#define EMBER_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Returns the path of a file holding data[0..size), named by `tag` (one file per tag and
 * process, rewritten on every call; the caller unlinks it when done). Aborts when the scratch directory is unusable: a
 * fuzzer that cannot write its input tests nothing. */
static inline const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[8][128];
    static int used;
    static const char *tags[8];
    int slot = 0;
    while (slot < used && strcmp(tags[slot], tag) != 0)
        slot++;
    if (slot == used) {
        if (used == 8)
            abort();
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path[slot], sizeof path[slot], "%s/ember-fuzz-%ld-%s", dir, (long)getpid(), tag);
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
