/* ember inspect: what a safetensors file holds (ember's or anyone's): its metadata,
 * then one line per tensor with dtype, shape, element count and, with --stats, the
 * range and mean of the values. The file is read through the same checked reader as
 * every load, so a damaged file gets the same message here. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli_common.h"
#include "commands.h"
#include "ember.h"

static const char inspect_details[] =
    "Prints the __metadata__ entries (a model description over several lines is\n"
    "indented under its key), then each tensor in file order: name, dtype, shape,\n"
    "elements and bytes; then the totals. A full training checkpoint (ember train\n"
    "--checkpoint) also shows its step, epoch and optimizer.\n";

static const char inspect_examples[] =
    "  ember inspect mlp.safetensors\n"
    "  ember inspect checkpoint.safetensors --stats --filter '0.*'\n";

/* "1,234,567" */
static const char *grouped(long long v, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
    size_t len = strlen(digits), out = 0;
    if (v < 0 && out + 1 < size)
        buf[out++] = '-';
    for (size_t i = 0; i < len && out + 2 < size; i++) {
        if (i && (len - i) % 3 == 0)
            buf[out++] = ',';
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

static void print_metadata(const em_st_file *f)
{
    int n = em_st_metadata_count(f);
    printf("metadata (%d):\n", n);
    for (int i = 0; i < n; i++) {
        const char *key = em_st_metadata_key(f, i);
        const char *value = em_st_metadata(f, key);
        if (!strchr(value, '\n')) {
            printf("  %s: %s\n", key, value);
            continue;
        }
        printf("  %s:\n", key);
        for (const char *line = value; *line;) {
            size_t len = strcspn(line, "\n");
            printf("    | %.*s\n", (int)len, line);
            line += len;
            if (*line)
                line++;
        }
    }
}

/* Step, epoch and optimizer of a full checkpoint. */
static void print_training_state(const char *path)
{
    if (!em_checkpoint_is_full(path))
        return;
    em_train_position pos;
    em_optim_kind kind;
    em_optim_opts opts;
    if (em_checkpoint_read_position(path, &pos) != EM_OK) {
        printf("training state: unreadable (%s)\n", ember_last_error());
        return;
    }
    printf("training state: %lld steps done; epoch %d, %lld of its batches done; batch size %lld over "
           "%lld examples%s\n",
           (long long)pos.step, pos.epoch, (long long)pos.loader.batches_done, (long long)pos.batch_size,
           (long long)pos.train_count, pos.shuffle ? ", shuffled" : "");
    if (em_checkpoint_optimizer(path, &kind, &opts) == EM_OK)
        printf("optimizer: %s, lr %g\n", em_optim_name(kind), (double)opts.lr);
}

/* ',' or '|' separated shell patterns; NULL matches everything. */
static bool matches(const char *patterns, const char *name)
{
    if (!patterns)
        return true;
    char one[256];
    for (const char *p = patterns;;) {
        size_t len = strcspn(p, ",|");
        if (len > 0 && len < sizeof one) {
            memcpy(one, p, len);
            one[len] = '\0';
            if (fnmatch(one, name, 0) == 0)
                return true;
        }
        if (!p[len])
            return false;
        p += len + 1;
    }
}

static void print_stats(const em_st_file *f, const em_st_entry *e)
{
    em_tensor *t = e->dtype != EM_DTYPE_OTHER && e->numel > 0 ? em_st_load(f, e->name, NULL) : NULL;
    if (!t) {
        printf("  %s", e->dtype == EM_DTYPE_OTHER ? "(not loadable)" : e->numel ? "(unreadable)" : "");
        em_clear_error();
        return;
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = t->data[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    int64_t good = t->numel - bad;
    if (good)
        printf("  min %-11.4g max %-11.4g mean %-11.4g", lo, hi, sum / (double)good);
    if (bad)
        printf("  %lld non-finite", (long long)bad);
    em_step_end();
}

int cmd_inspect_main(int argc, char **argv, int first)
{
    bool stats = false;
    const char *filter = NULL;
    args_option options[] = {
        {"stats", ARGS_FLAG, NULL, &stats, "also print min, max and mean of each tensor", NULL, 0, 0, NULL, false},
        {"filter", ARGS_STRING, "PATTERNS", &filter, "only tensors whose names match (shell patterns, ',' between)",
         "all", 0, 0, NULL, false},
    };
    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "inspect",
        .usage = "FILE [options]",
        .summary = "List the tensors, dtypes, shapes and metadata of a safetensors file.",
        .details = inspect_details,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
        .min_positionals = 1,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = inspect_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    const char *path = positionals[0];
    em_st_file *f = em_st_open(path);
    if (!f)
        return cli_library_error();

    printf("%s\n", path);
    print_metadata(f);
    print_training_state(path);

    int n = em_st_count(f), shown = 0;
    size_t name_width = 4;
    for (int i = 0; i < n; i++) {
        const em_st_entry *e = em_st_entry_at(f, i);
        size_t len = strlen(e->name);
        if (matches(filter, e->name) && len > name_width)
            name_width = len < 48 ? len : 48;
    }
    printf("tensors (%d):\n", n);
    printf("  %-*s  %-5s  %-20s %12s %14s\n", (int)name_width, "name", "dtype", "shape", "elements", "bytes");
    long long total_elements = 0, total_bytes = 0;
    char a[32], b[32];
    for (int i = 0; i < n; i++) {
        const em_st_entry *e = em_st_entry_at(f, i);
        total_elements += e->numel;
        total_bytes += (long long)e->nbytes;
        if (!matches(filter, e->name))
            continue;
        shown++;
        printf("  %-*s  %-5s  %-20s %12s %14s", (int)name_width, e->name, e->dtype_name,
               em_dims_str(e->ndim, e->shape), grouped(e->numel, a, sizeof a), grouped((long long)e->nbytes, b, sizeof b));
        if (stats)
            print_stats(f, e);
        printf("\n");
    }
    if (filter)
        printf("%d of %d tensors match '%s'\n", shown, n, filter);
    printf("total: %s elements, %s bytes of data\n", grouped(total_elements, a, sizeof a),
           grouped(total_bytes, b, sizeof b));
    em_st_close(f);
    return EXIT_OK;
}
