"""W8 of bench/WORKLOADS.md, the PyTorch side: a whole process that imports torch, builds
W2's network, loads a saved state_dict and classifies one image, printing the most
probable class as `ember predict` does (the image decoded with PIL, made grey, stretched
to 28x28 and scaled to [0, 1]). Default thread set-up: what a user's script gets.

  torch_w8_start.py WEIGHTS.pt IMAGE.png           the timed process
  torch_w8_start.py --export CNN.safetensors WEIGHTS.pt IMAGE.png
      prepares it (untimed): converts ember's checkpoint into a state_dict saved with
      torch.save, and writes the first Fashion-MNIST test image as a PNG.
"""
import sys

from w2_network import network

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def classify(weights_path, image_path):
    import numpy
    import torch
    from PIL import Image
    model = network(torch.nn)
    model.load_state_dict(torch.load(weights_path))
    model.eval()
    image = Image.open(image_path).convert("L")
    if image.size != (28, 28):
        image = image.resize((28, 28), Image.BILINEAR)
    x = torch.from_numpy(numpy.asarray(image, dtype=numpy.float32) / 255.0).reshape(1, 1, 28, 28)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    top = int(probs.argmax())
    print(f"{image_path}: {CLASSES[top]} {float(probs[top]):.4f}")


def read_safetensors(torch, path):
    """The float32 tensors of a safetensors file, by name."""
    import json
    import struct
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = bytearray(data[8 + header_len:])
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {entry['dtype']}, expected F32")
        begin, end = entry["data_offsets"]
        tensors[name] = torch.frombuffer(body[begin:end], dtype=torch.float32).reshape(entry["shape"]).clone()
    return tensors


def export(safetensors_path, weights_path, image_path):
    import torch
    from PIL import Image
    import fashion_mnist
    model = network(torch.nn)
    saved = read_safetensors(torch, safetensors_path)
    model.load_state_dict({name: saved[name] for name in model.state_dict()})
    torch.save(model.state_dict(), weights_path)
    test_x, _ = fashion_mnist.load(torch, "t10k")
    Image.fromarray(test_x[0, 0].numpy(), mode="L").save(image_path)


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--export":
        export(*args[1:])
    elif len(args) == 2:
        classify(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
