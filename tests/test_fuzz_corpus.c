/* Replays every saved fuzz input through the same entry points the libFuzzer targets
 * use, so that the seed corpus and each crash ever found stay regression tests in the
 * normal build (and under the sanitizers in `make sanitize`). Corpus files live in
 * tests/fuzz/corpus/<target>/; a target with no files fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* Each target file defines LLVMFuzzerTestOneInput; here each gets its own name. */
#define LLVMFuzzerTestOneInput fuzz_safetensors_input
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_model_parse_input
#include "fuzz/fuzz_model_parse.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_idx_input
#include "fuzz/fuzz_idx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_csv_input
#include "fuzz/fuzz_csv.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_image_input
#include "fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_bpe_input
#include "fuzz/fuzz_bpe.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_gpt_import_input
#include "fuzz/fuzz_gpt_import.c"
#undef LLVMFuzzerTestOneInput

typedef struct fuzz_target {
    const char *name; /* the corpus folder */
    int (*run)(const uint8_t *data, size_t size);
} fuzz_target;

static const fuzz_target targets[] = {
    {"safetensors", fuzz_safetensors_input},
    {"model_parse", fuzz_model_parse_input},
    {"idx", fuzz_idx_input},
    {"csv", fuzz_csv_input},
    {"image", fuzz_image_input},
    {"bpe", fuzz_bpe_input},
    {"gpt_import", fuzz_gpt_import_input},
};

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap)
            break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(fp);
    *size = n;
    return buf;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every file of the target's corpus folder (in name order, for reproducible
 * output); returns how many ran. */
static int replay(const fuzz_target *t)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", test_path("tests/fuzz/corpus"));
    size_t len = strlen(dir);
    snprintf(dir + len, sizeof dir - len, "/%s", t->name);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "no corpus folder %s", dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t count = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            char **bigger = realloc(names, cap * sizeof *names);
            if (!bigger)
                break;
            names = bigger;
        }
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, by_name);
    int ran = 0;
    for (size_t i = 0; i < count; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t size = 0;
        uint8_t *data = read_file(path, &size);
        CHECK_MSG(data != NULL, "cannot read %s", path);
        if (data) {
            /* Named before it runs: after a crash, the last line names the input. */
            fprintf(stderr, "%s\n", path);
            CHECK_MSG(t->run(data, size) == 0, "%s", path);
            ran++;
        }
        free(data);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(void)
{
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int ran = replay(&targets[i]);
        printf("%-12s %d inputs\n", targets[i].name, ran);
        CHECK_MSG(ran > 0, "the %s corpus is empty", targets[i].name);
    }
    em_release_thread_state();
    return test_finish();
}
