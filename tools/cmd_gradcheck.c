/* ember gradcheck: compares every parameter's gradient from backward with central
 * differences on a seeded random batch, to check a model (and the layers behind it)
 * before training it. */
#include <stdio.h>

#include "args.h"
#include "cli_common.h"
#include "commands.h"
#include "ember.h"

static const char gradcheck_details[] =
    "A seeded random batch goes through the model into a scalar loss; for each\n"
    "parameter, a sample of its elements is nudged both ways and the change of the\n"
    "loss is compared with the gradient from backward. Prints the worst relative error\n"
    "of each parameter and exits with status 1 when one exceeds the tolerance.\n";

static const char gradcheck_examples[] = "  ember gradcheck models/mlp.ember --batch 2\n";

int cmd_gradcheck_main(int argc, char **argv, int first)
{
    int64_t batch = 4, seed = 0, threads = 0;
    args_option options[] = {
        {"batch", ARGS_INT, "N", &batch, "examples in the random batch", NULL, 1, 1 << 16, NULL, false},
        {"seed", ARGS_INT, "S", &seed, "seed of the initialisation and the batch", NULL, 0, 9e18,
         NULL, false},
        {"threads", ARGS_INT, "T", &threads, "worker threads", "0: one per core", 0, 4096, NULL, false},
    };
    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "gradcheck",
        .usage = "MODEL [options]",
        .summary = "Check a model's gradients against finite differences.",
        .details = gradcheck_details,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
        .min_positionals = 1,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = gradcheck_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    const char *model_path = positionals[0];
    em_set_num_threads((int)threads);

    em_model *model = em_model_load(model_path, (uint64_t)seed);
    if (!model)
        return cli_library_error();
    printf("model %s: %lld parameters\n", model_path, (long long)em_model_param_count(model));
    double worst = 0;
    status = em_model_gradcheck(model, batch, (uint64_t)seed, stdout, &worst);
    fflush(stdout);
    em_model_free(model);
    if (status != EM_OK)
        return cli_library_error();
    printf("gradcheck passed: worst relative error %.2e (tolerance %g)\n", worst,
           EM_MODEL_GRADCHECK_TOLERANCE);
    return EXIT_OK;
}
