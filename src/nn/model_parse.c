/* Model descriptions: one layer a line, '#' comments, blank lines ignored; the first
 * line is `input DxHxW` (or `input N`), each later line a layer kind followed by
 * positional values and key=value options. Every error names source:line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define MAX_WORDS (1 + EM_LAYER_MAX_OPTIONS)
#define MAX_DESCRIPTION_BYTES (1 << 20)
#define MAX_INPUT_DIM (INT64_C(1) << 31)

/* Splits a line (comment already cut) into whitespace-separated words in place. */
static int split_words(char *line, char **words, int max_words)
{
    int n = 0;
    char *p = line;
    for (;;) {
        p += strspn(p, " \t\r\v\f");
        if (!*p)
            return n;
        if (n == max_words)
            return -1;
        words[n++] = p;
        p += strcspn(p, " \t\r\v\f");
        if (*p)
            *p++ = '\0';
    }
}

/* "1x28x28" -> {1, 28, 28} */
static int parse_input_shape(char **words, int n_words, em_shape *shape)
{
    if (n_words != 2)
        return em_error("input: expected one shape like 'input 1x28x28' or 'input 784', got %d values",
                        n_words - 1);
    shape->ndim = 0;
    const char *p = words[1];
    for (;;) {
        if (shape->ndim == EM_MAX_DIMS - 1)
            return em_error("input: '%.64s' has more than %d dimensions", words[1], EM_MAX_DIMS - 1);
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end != 'x' && *end != '\0'))
            return em_error("input: expected a shape like 1x28x28 or 784, got '%.64s'", words[1]);
        if (errno == ERANGE || v < 1 || v > MAX_INPUT_DIM)
            return em_error("input: every size must be between 1 and %lld, got '%.64s'",
                            (long long)MAX_INPUT_DIM, words[1]);
        shape->dim[shape->ndim++] = v;
        if (*end == '\0')
            return em_check_shape(shape->ndim, shape->dim) == EM_OK ? EM_OK : em_error_prefix("input: ");
        p = end + 1;
    }
}

static int unknown_kind(const char *word)
{
    char kinds[1024];
    em_layer_kind_list(kinds, sizeof kinds);
    if (strcmp(word, "input") == 0)
        return em_error("'input' may appear only once, as the first line");
    return em_error("unknown layer '%.64s'; valid kinds: %s", word, kinds);
}

static int add_layer_line(em_model *m, char **words, int n_words)
{
    const em_layer_kind *kind = em_layer_kind_find(words[0]);
    if (!kind)
        return unknown_kind(words[0]);
    em_layer_options opts = {.kind = kind};
    for (int i = 1; i < n_words; i++) {
        em_layer_option *it = &opts.item[opts.count++];
        char *eq = strchr(words[i], '=');
        if (eq) {
            *eq = '\0';
            it->key = words[i];
            it->value = eq + 1;
            if (!it->key[0] || !it->value[0])
                return em_error("%s: expected key=value, got '%.64s=%.64s' (usage: %s)", kind->name, it->key,
                                it->value, kind->usage);
        } else {
            it->value = words[i];
        }
    }
    void *config = calloc(1, kind->config_size ? kind->config_size : 1);
    if (!config)
        return em_error("out of memory");
    int status = kind->parse ? kind->parse(kind, config, &opts) : EM_OK;
    if (status == EM_OK)
        status = em_options_check_used(&opts);
    if (status == EM_OK)
        status = em_model_add_layer(m, kind, config);
    free(config);
    return status;
}

static em_model *parse(const char *text, const char *source, uint64_t seed, bool initialise)
{
    if (!source)
        source = "<description>";
    if (!text) {
        em_error("%s: no description text", source);
        return NULL;
    }
    char *copy = strdup(text);
    if (!copy) {
        em_error("%s: out of memory", source);
        return NULL;
    }
    em_model *m = NULL;
    int line_no = 0;
    char *next = copy;
    while (next) {
        char *line = next;
        char *newline = strchr(line, '\n');
        next = newline ? newline + 1 : NULL;
        if (newline)
            *newline = '\0';
        line_no++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *words[MAX_WORDS];
        int n_words = split_words(line, words, MAX_WORDS);
        if (n_words == 0)
            continue;
        int status;
        if (n_words < 0) {
            status = em_error("too many options on one line (at most %d)", EM_LAYER_MAX_OPTIONS);
        } else if (!m) {
            em_shape input;
            if (strcmp(words[0], "input") != 0)
                status = em_error("expected 'input DxHxW' or 'input N' as the first line, got '%.64s'",
                                  words[0]);
            else if ((status = parse_input_shape(words, n_words, &input)) == EM_OK &&
                     !(m = em_model_new(input.ndim, input.dim, seed)))
                status = EM_ERR;
            if (m)
                em_model_skip_init(m, !initialise);
        } else {
            status = add_layer_line(m, words, n_words);
        }
        if (status != EM_OK) {
            em_error_prefix("%s:%d: ", source, line_no);
            em_model_free(m);
            free(copy);
            return NULL;
        }
    }
    free(copy);
    if (!m || em_model_layer_count(m) == 0) {
        em_error("%s: %s", source,
                 !m ? "no 'input' line: a description starts with 'input DxHxW' or 'input N'"
                    : "no layers after the 'input' line");
        em_model_free(m);
        return NULL;
    }
    if (em_model_set_description(m, text) != EM_OK) {
        em_model_free(m);
        return NULL;
    }
    em_model_skip_init(m, false);
    return m;
}

em_model *em_model_parse(const char *text, const char *source, uint64_t seed)
{
    return parse(text, source, seed, true);
}

em_model *em_model_parse_uninitialised(const char *text, const char *source)
{
    return parse(text, source, 0, false);
}

em_model *em_model_load(const char *path, uint64_t seed)
{
    if (!path) {
        em_error("em_model_load: no path");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        em_error("cannot open model description %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(MAX_DESCRIPTION_BYTES + 1);
    errno = 0;
    size_t n = text ? fread(text, 1, MAX_DESCRIPTION_BYTES + 1, f) : 0;
    bool read_error = ferror(f) != 0;
    int read_errno = errno; /* EISDIR for a directory */
    fclose(f);
    em_model *m = NULL;
    if (!text)
        em_error("%s: out of memory", path);
    else if (read_error)
        em_error("cannot read model description %s: %s", path, read_errno ? strerror(read_errno) : "read error");
    else if (n > MAX_DESCRIPTION_BYTES)
        em_error("%s: larger than %d bytes; is this a model description?", path, MAX_DESCRIPTION_BYTES);
    else if (memchr(text, '\0', n))
        em_error("%s: contains NUL bytes; a model description is text", path);
    else {
        text[n] = '\0';
        m = em_model_parse(text, path, seed);
    }
    free(text);
    return m;
}
