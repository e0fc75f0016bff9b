/* Trains the W1 multilayer perceptron on Fashion-MNIST with the C API: SGD with
 * momentum, one epoch in file order, then saves a checkpoint that `ember eval` reads.
 * Run from the source tree: ./example_train_mlp [models/mlp.ember] [mlp.safetensors] */
#include <stdio.h>

#include "ember.h"

int main(int argc, char **argv)
{
    em_model *net = em_model_load(argc > 1 ? argv[1] : "models/mlp.ember", 0);
    em_dataset *train = em_dataset_open("fashion-mnist", EM_SPLIT_TRAIN, -1);
    em_dataset *test = em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1);
    em_train_opts opts = em_train_defaults();
    opts.batch_size = 128;
    opts.shuffle = false;
    opts.optim.lr = 0.05f;
    opts.optim.momentum = 0.9f;
    opts.save_path = argc > 2 ? argv[2] : "mlp.safetensors";
    em_train_result result;
    if (!net || !train || !test || em_train(net, train, test, &opts, &result) != EM_OK) {
        fprintf(stderr, "train_mlp: %s\n", ember_last_error());
        return 1;
    }
    printf("test accuracy %.4f, %.2f s per epoch\n", result.last.test_accuracy, result.last.seconds);
    em_model_free(net);
    em_dataset_free(train);
    em_dataset_free(test);
    return 0;
}
