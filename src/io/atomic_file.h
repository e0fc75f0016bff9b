/* Replacing a file so that readers (and a crash) see either the old content or the
 * new, never a mix: the bytes go to a temporary file in the same folder, which is
 * flushed to disk, renamed over the target, and the folder is flushed so that the
 * rename itself survives a power cut. Internal to ember (safetensors, checkpoints). */
#ifndef EMBER_IO_ATOMIC_FILE_H
#define EMBER_IO_ATOMIC_FILE_H

#include <stddef.h>

typedef struct em_atomic_file em_atomic_file;

/* Creates the temporary file next to `path`. NULL and an error naming path on failure. */
em_atomic_file *em_atomic_open(const char *path);

/* Appends bytes. After a failure every later write is skipped and commit fails, so
 * callers may check only the commit. Returns EM_OK or EM_ERR. */
int em_atomic_write(em_atomic_file *f, const void *data, size_t n);

/* Flushes, renames over the target, flushes the folder, and frees f (also on
 * failure, in which case the temporary file is removed and the target untouched). */
int em_atomic_commit(em_atomic_file *f);

/* Removes the temporary file and frees f; the target is untouched. NULL is a no-op. */
void em_atomic_abort(em_atomic_file *f);

/* The whole dance for one buffer. */
int em_atomic_write_file(const char *path, const void *data, size_t n);

#endif
