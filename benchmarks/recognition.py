"""Does asking for a 7 give a 7? Class-conditional samples recognised by an independent classifier.

    python benchmarks/recognition.py --data-dir ../shared/data/mnist

Trains a small Keras CNN on `test[:8000]` of real MNIST (its accuracy on `test[8000:]` is printed),
then a class-conditional MLP VAE (prior "class", the default of a conditional model) for 20 epochs
on the same images, draws `--per-class` samples of every class with `vae.sample(n, seed=c, labels=c,
temperature=T)` and prints the fraction the classifier recognises as the asked class, e.g.
    classifier_accuracy=0.98
    temperature=1.0 recognised=0.9 per_class=[...] source=python
    swap recognised=... (posterior means of test[8000:] decoded with another label)
With `--export`, the samples at temperature 1 are also asked of the exported decoder's `sample`
signature (`keras_vae.ExportedVAE.sample(n, seed, labels)`), which must give the same images.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH_SIZE = 128


def train_classifier(images, labels, classes, epochs=6, seed=0):
    """A small CNN (two conv layers, dropout) on uint8 images; returns the compiled model."""
    import keras

    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential([
        keras.Input(images.shape[1:]),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(classes),
    ])
    classifier.compile(optimizer="adam", metrics=["accuracy"],
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(images, labels, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    return classifier


def train_conditional(images, labels, classes, epochs, seed=0):
    """A class-conditional MLP VAE trained as train.py would (the Trainer, batch 128, Adam 1e-3)."""
    from keras_vae import data
    from keras_vae.models import build_vae
    from keras_vae.training import Trainer, distribute, make_optimizer

    model = build_vae("mlp", images.shape[1:], seed=seed, classes=classes)
    model.compile(optimizer=make_optimizer("adam", 1e-3))
    model.optimizer.build(model.trainable_variables)
    trainer = Trainer(model, distribute.make_strategy("auto"), steps_per_execution=10, progress=False)
    source = data.InMemoryImages(images, BATCH_SIZE, seed, labels=labels)
    validation = data.evaluation_dataset(images[:1000], 500, labels=labels[:1000])
    trainer.fit(source, validation, epochs, resume=False)
    return model


def recognised(classifier, pictures, asked):
    """The fraction of `pictures` in [0, 1] that the classifier calls `asked`, and per class."""
    import numpy as np

    predicted = np.argmax(classifier.predict(np.round(pictures * 255.0), verbose=0), axis=-1)
    hits = predicted == asked
    return float(np.mean(hits)), [round(float(np.mean(hits[asked == c])), 2) for c in np.unique(asked)]


def class_samples(sample, classes, per_class, temperature):
    """`per_class` samples of every class c from `sample(n, seed=c, labels=c, temperature)`."""
    import numpy as np

    pictures = [np.asarray(sample(per_class, c, c, temperature)) for c in range(classes)]
    return np.concatenate(pictures), np.repeat(np.arange(classes), per_class)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST IDX files (t10k-*)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the conditional VAE")
    parser.add_argument("--per-class", type=int, default=50, help="samples asked of every class")
    parser.add_argument("--temperature", type=float, action="append", help="default: 1.0 and 0.7")
    parser.add_argument("--seed", type=int, default=0, help="seed of the VAE (the classifier's is 0)")
    parser.add_argument("--export", action="store_true", help="also sample through the exported decoder")
    args = parser.parse_args()
    import numpy as np

    from keras_vae import data

    train = data.open_split("test[:8000]", data_dir=args.data_dir)
    images, labels = train.load_all()
    held_out, held_out_labels = data.load_split("test[8000:]", data_dir=args.data_dir)
    classes = len(train.classes)
    classifier = train_classifier(images, labels, classes)
    accuracy = float(np.mean(np.argmax(classifier.predict(held_out, verbose=0), -1) == held_out_labels))
    print(f"classifier_accuracy={accuracy:.4f} images={len(held_out)}", flush=True)
    model = train_conditional(images, labels, train.classes, args.epochs, args.seed)

    def python_sample(n, seed, label, temperature):
        return model.sample(n, seed=seed, labels=label, temperature=temperature)

    for temperature in args.temperature or [1.0, 0.7]:
        pictures, asked = class_samples(python_sample, classes, args.per_class, temperature)
        rate, per_class = recognised(classifier, pictures, asked)
        print(f"temperature={temperature} recognised={rate:.4f} per_class={json.dumps(per_class)} "
              "source=python", flush=True)
    # Posterior means decoded with another label: does the decoder follow the label or z?
    pixels = held_out[:1000].astype("float32") / 255.0
    mean, _ = model.encode(pixels, held_out_labels[:1000])
    other = (held_out_labels[:1000] + 1 + np.arange(1000) % (classes - 1)) % classes
    rate, _ = recognised(classifier, np.asarray(model.decode(mean, other)), other)
    print(f"swap recognised={rate:.4f}", flush=True)
    if args.export:  # the exported `sample` signature draws at temperature 1
        from keras_vae import ExportedVAE, publish

        with tempfile.TemporaryDirectory() as root:
            publish(root, model, {"config.json": json.dumps({"likelihood": "bernoulli"})})
            exported = ExportedVAE(root)
            pictures, asked = class_samples(lambda n, seed, label, _: exported.sample(n, seed, label),
                                            classes, args.per_class, 1.0)
            same, _ = class_samples(python_sample, classes, args.per_class, 1.0)
            rate, per_class = recognised(classifier, pictures, asked)
            print(f"temperature=1.0 recognised={rate:.4f} per_class={json.dumps(per_class)} source=export "
                  f"max_difference_to_python={float(np.max(np.abs(pictures - same))):.2e}", flush=True)


if __name__ == "__main__":
    main()
