#include "cli_common.h"

#include <stdio.h>
#include <string.h>

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
