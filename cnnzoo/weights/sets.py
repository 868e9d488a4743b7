"""Weights sets as data: what each publisher's file is, where it lives, how it was trained.

Model files declare their sets with these helpers and pass them to
`register_model(weights=...)`; nothing here imports Keras or touches the
network. A set is a plain dict (see `keras_applications` and `timm_hub`),
so `model_info(name)["weights"]` is JSON.
"""

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_TOP1_SOURCE = "https://keras.io/api/applications/ (Top-1 Accuracy column)"
TORCHVISION_TOP1_SOURCE = "https://pytorch.org/vision/stable/models.html (Acc@1, ImageNet-1K val)"
TIMM_LICENSE = "bsd-3-clause (timm's model card; torchvision's weights)"

# The preprocessing modes of `keras.applications.imagenet_utils.preprocess_input`.
CAFFE = {"mode": "caffe", "note": "RGB to BGR, minus the BGR mean [103.939, 116.779, 123.68]"}
TF = {"mode": "tf", "note": "x / 127.5 - 1"}
TORCH = {"mode": "torch", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
         "note": "x / 255, minus ImageNet's mean, divided by its std"}

# The layouts a file can be in, and the reader each needs.
LAYOUTS = ("keras_applications", "timm", "cnnzoo")


def keras_applications(folder, stem, md5_top, md5_notop, top1, license, preprocessing,
                       conventions=None, notop_stem=None):
    """A keras.applications set: its `.h5` files (with and without the top) and their MD5.

    Args:
        folder: the subfolder of keras.applications' bucket (`"vgg16"`, `"resnet"`).
        stem: the file name without `.h5` of the file with the top.
        md5_top, md5_notop: the hashes keras.applications checks (`None`
            where it checks none: MobileNetV2).
        top1: the reported top-1 accuracy (%) on ImageNet-1K validation.
        license: the licence of the weights, as published.
        preprocessing: one of `CAFFE`, `TF`, `TORCH`.
        conventions: `create_model` keywords the weights need (ResNet v1's
            `stride_in_1x1`, MobileNetV2's TensorFlow `padding`).
        notop_stem: the file name without the top, where it is not
            `stem + "_notop"`.
    """
    notop = notop_stem or f"{stem}_notop"
    return {
        "publisher": "keras.applications",
        "layout": "keras_applications",
        "files": {
            "top": {"url": f"{KERAS_BASE}{folder}/{stem}.h5", "md5": md5_top},
            "notop": {"url": f"{KERAS_BASE}{folder}/{notop}.h5", "md5": md5_notop},
        },
        "top1": top1,
        "top1_source": KERAS_TOP1_SOURCE,
        "input_size": 224,
        "preprocessing": dict(preprocessing),
        "license": license,
        "conventions": dict(conventions or {}),
    }


def timm_hub(arch, tag, top1, *, crop_pct=0.875, train_size=224, conventions=None,
             note=""):
    """torchvision's weights as timm publishes them: `timm/<arch>.<tag>` on the Hugging Face hub.

    Args:
        arch: timm's architecture name (`"resnet50"`, `"vgg16_bn"`).
        tag: `"tv_in1k"` (torchvision's original recipe) or `"tv2_in1k"`
            (its 2021 recipe).
        top1: torchvision's reported top-1 (%) at 224 (resize 256 or 232,
            centre crop 224).
        crop_pct: timm's evaluation crop fraction.
        train_size: the size the weights were trained at (the V2 recipe
            trains at 176 and evaluates at 224).
    """
    return {
        "publisher": "torchvision (as published by timm on the Hugging Face hub)",
        "layout": "timm",
        "hub_id": f"timm/{arch}.{tag}",
        "filename": "model.safetensors",
        "sha256": None,
        "top1": top1,
        "top1_source": TORCHVISION_TOP1_SOURCE,
        "input_size": 224,
        "train_size": train_size,
        "preprocessing": {**TORCH, "crop_pct": crop_pct},
        "license": TIMM_LICENSE,
        "conventions": dict(conventions or {}),
        "note": note,
    }
