#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"

int cli_library_error(void)
{
    const char *message = ember_last_error();
    fprintf(stderr, "ember: %s\n", message && message[0] ? message : "unknown error");
    return EXIT_LIBRARY_ERROR;
}

bool cli_spec_is_file(const char *spec)
{
    return strncmp(spec, "idx:", 4) == 0 || strncmp(spec, "csv:", 4) == 0;
}

static bool same_dims(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

int cli_fit_dataset(const em_model *m, const char *model_name, em_dataset *ds)
{
    int64_t input[EM_MAX_DIMS];
    int input_ndim = em_model_input_shape(m, input);
    if (input_ndim < 1 || input_ndim > EM_MAX_DIMS)
        return em_error("model %s has no usable input shape", model_name);
    int64_t input_numel = em_shape_numel(input_ndim, input);

    if (!same_dims(input_ndim, input, ds->item_ndim, ds->item_shape)) {
        if (input_numel != ds->item_numel) {
            return em_error("model %s expects inputs of shape %s (%lld values), but the items of "
                            "%s have shape %s (%lld values)",
                            model_name, em_dims_str(input_ndim, input), (long long)input_numel,
                            ds->source, em_dims_str(ds->item_ndim, ds->item_shape),
                            (long long)ds->item_numel);
        }
        if (em_dataset_set_item_shape(ds, input_ndim, input) != EM_OK)
            return EM_ERR;
    }

    int64_t output[EM_MAX_DIMS];
    int output_ndim = em_model_output_shape(m, output);
    if (output_ndim == 1 && ds->num_classes > output[0]) {
        return em_error("%s has labels up to %d (%d classes), but model %s has only %lld outputs",
                        ds->source, ds->num_classes - 1, ds->num_classes, model_name,
                        (long long)output[0]);
    }
    return EM_OK;
}

int cli_check_writable(const char *option, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return em_error("--%s %s: that is a directory; give a file name", option, path);

    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir)
            return em_error("--%s %s: path too long", option, path);
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    if (stat(dir, &st) != 0)
        return em_error("--%s %s: cannot use directory '%s': %s", option, path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return em_error("--%s %s: '%s' is not a directory", option, path, dir);
    if (access(dir, W_OK) != 0)
        return em_error("--%s %s: directory '%s' is not writable: %s", option, path, dir,
                        strerror(errno));
    return EM_OK;
}

int cli_open_data(const char *data_spec, const char *test_spec, int label_column, bool test_required,
                  em_dataset **train, em_dataset **test)
{
    *test = NULL;
    *train = em_dataset_open(data_spec, EM_SPLIT_TRAIN, label_column);
    if (!*train)
        return EM_ERR;
    if (test_spec)
        *test = em_dataset_open(test_spec, EM_SPLIT_TEST, label_column);
    else if (!cli_spec_is_file(data_spec))
        *test = em_dataset_open(data_spec, EM_SPLIT_TEST, label_column);
    else if (test_required)
        return em_error("%s has no test split: give --test-data", data_spec);
    else
        return EM_OK;
    return *test ? EM_OK : EM_ERR;
}

int cli_check_outputs(const em_train_opts *o)
{
    if ((o->save_path && cli_check_writable("save", o->save_path) != EM_OK) ||
        (o->plot_path && cli_check_writable("plot", o->plot_path) != EM_OK) ||
        (o->metrics_path && cli_check_writable("metrics", o->metrics_path) != EM_OK) ||
        (o->checkpoint_path && cli_check_writable("checkpoint", o->checkpoint_path) != EM_OK))
        return EM_ERR;
    return EM_OK;
}

void cli_report_outputs(const em_train_opts *o)
{
    if (o->checkpoint_path)
        printf("checkpoint %s\n", o->checkpoint_path);
    if (o->save_path)
        printf("saved %s\n", o->save_path);
    if (o->plot_path)
        printf("plotted %s\n", o->plot_path);
    if (o->metrics_path)
        printf("metrics in %s\n", o->metrics_path);
}
