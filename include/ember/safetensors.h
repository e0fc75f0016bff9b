/* safetensors files: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}, then raw
 * little-endian data. Read through mmap with every length and offset checked; F32 as
 * is, F16 and BF16 widened exactly, F64 rounded, and integer and BOOL tensors (such as
 * PyTorch's int64 num_batches_tracked) converted to F32 (exactly up to 2^24 in
 * magnitude). Written as F32, atomically (temp file, fsync, rename). */
#ifndef EMBER_SAFETENSORS_H
#define EMBER_SAFETENSORS_H

#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_dtype {
    EM_F32 = 0, EM_F16, EM_BF16,
    EM_F64, EM_I64, EM_I32, EM_I16, EM_I8, EM_U8, EM_BOOL, /* converted when loaded */
    EM_DTYPE_OTHER /* listed, not loadable (U64, F8 kinds, unknown names) */
} em_dtype;

typedef struct em_st_entry {
    const char *name;
    em_dtype dtype;
    const char *dtype_name;   /* as written in the file */
    int ndim;
    int64_t shape[EM_MAX_DIMS];
    int64_t numel;
    const void *data;         /* into the mapping */
    size_t nbytes;
} em_st_entry;

typedef struct em_st_file em_st_file;

em_st_file *em_st_open(const char *path);
void em_st_close(em_st_file *f);
int em_st_count(const em_st_file *f);
const em_st_entry *em_st_entry_at(const em_st_file *f, int i);
const em_st_entry *em_st_find(const em_st_file *f, const char *name);
/* The tensor converted to a new float32 tensor in arena (NULL: step arena). */
em_tensor *em_st_load(const em_st_file *f, const char *name, em_arena *arena);
/* Copies into an existing tensor, checking that the shapes agree (the message names
 * the tensor and both shapes). */
int em_st_load_into(const em_st_file *f, const char *name, em_tensor *dst);
/* A __metadata__ value, or NULL. */
const char *em_st_metadata(const em_st_file *f, const char *key);
int em_st_metadata_count(const em_st_file *f);
const char *em_st_metadata_key(const em_st_file *f, int i);
const char *em_st_path(const em_st_file *f);

/* Writes F32 tensors (dense copies of any views) with optional metadata pairs. */
int em_st_save(const char *path, int n, const char *const *names, const em_tensor *const *tensors,
               int n_meta, const char *const *meta_keys, const char *const *meta_values);

#ifdef __cplusplus
}
#endif
#endif
