"""Data: the catalogue of data sets, their sources, the lab's probe tasks, augmentation, and data for a trained
model. Importing this package registers every data set."""

from . import segmentation, sources, tasks  # noqa: F401  (registration)
from .augment import AugmentConfig, Augmented, BatchCropFlip, build_transform, training_set
from .catalog import (
    DataInfo,
    TensorImages,
    dataset_names,
    get_source,
    load_split,
    register_dataset,
    seeded_subset,
    split_train_val,
)
from .images import (
    calibration_images,
    evaluation_set,
    input_warnings,
    normalize,
    plain_split,
    read_image,
    read_images,
    segmentation_evaluation_set,
)
from .preprocess import DataConfig, create_transform, resolve_data_config
from .segmentation import (
    IGNORE_INDEX,
    SceneConfig,
    SegmentationImages,
    fashion_scenes,
    segfolder,
    shift_scenes,
)
from .sources import (
    FASHION_MNIST_CLASSES,
    FashionMNIST,
    find_fashion_mnist,
    image_folder_samples,
    read_idx,
    synthetic_dataset,
)
from .tasks import PERMUTABLE, TASKS, load_task, permuted, shift_images

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IGNORE_INDEX",
    "PERMUTABLE",
    "TASKS",
    "AugmentConfig",
    "Augmented",
    "BatchCropFlip",
    "DataConfig",
    "DataInfo",
    "FashionMNIST",
    "SceneConfig",
    "SegmentationImages",
    "TensorImages",
    "build_transform",
    "calibration_images",
    "create_transform",
    "dataset_names",
    "evaluation_set",
    "fashion_scenes",
    "find_fashion_mnist",
    "get_source",
    "image_folder_samples",
    "input_warnings",
    "load_split",
    "load_task",
    "normalize",
    "permuted",
    "plain_split",
    "read_idx",
    "read_image",
    "read_images",
    "register_dataset",
    "resolve_data_config",
    "seeded_subset",
    "segfolder",
    "segmentation_evaluation_set",
    "shift_images",
    "shift_scenes",
    "split_train_val",
    "synthetic_dataset",
    "training_set",
]
