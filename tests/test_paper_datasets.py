"""The datasets the paper suites add, on tiny files in their real layouts: deepfashion (In-shop
partition) and ytbb-vehicles (clips placed by hand). Neither is ever downloaded."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from disentbench.contracts import Unavailable
from disentbench.images import pad_to_square, resize_images
from disentbench_plugins.datasets.deepfashion import DeepFashion, DeepFashionConfig
from disentbench_plugins.datasets.ytbb_vehicles import YTBBVehicles, YTBBVehiclesConfig

RNG = np.random.default_rng(0)
PARTITION = [("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
             ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
             ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "train"),
             ("img/MEN/Denim/id_00000081/01_1_front.jpg", "id_00000081", "query"),
             ("img/MEN/Denim/id_00000081/01_2_side.jpg", "id_00000081", "gallery"),
             ("img/WOMEN/Skirts/id_00000090/03_1_front.jpg", "id_00000090", "gallery"),
             ("img/WOMEN/Skirts/id_00000099/03_1_front.jpg", "id_00000099", "train")]  # not on disk


def _jpeg(shape) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, size=shape, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _deepfashion(root, *, as_zip: bool = False):
    folder = root / "deepfashion"
    (folder / "Eval").mkdir(parents=True)
    lines = [str(len(PARTITION)), "image_name item_id evaluation_status"] + [" ".join(e) for e in PARTITION]
    (folder / "Eval" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    pixels = {}
    members = {}
    for img, _, _ in PARTITION[:-1]:
        data = _jpeg((256, 176, 3) if "side" in img else (256, 256, 3))
        members[img] = data
        pixels[img] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if as_zip:
        with zipfile.ZipFile(folder / "img.zip", "w") as zf:
            for img, data in members.items():
                zf.writestr(img, data)
    else:
        for img, data in members.items():
            (folder / img).parent.mkdir(parents=True, exist_ok=True)
            (folder / img).write_bytes(data)
    return pixels


@pytest.mark.parametrize("as_zip", [False, True])
def test_deepfashion_partition_items_and_padding(tmp_path, as_zip):
    pixels = _deepfashion(tmp_path / "data", as_zip=as_zip)
    data = DeepFashion(DeepFashionConfig(resolution=32)).load(tmp_path / "data", tmp_path / "c", progress=False)
    s = data.splits
    assert [len(s[k]) for k in ("train", "query", "gallery", "test")] == [3, 1, 2, 3]
    assert s["train"].classes.tolist() == [2, 2, 80] and s["query"].classes.tolist() == [81]
    assert sorted(s["gallery"].classes.tolist()) == [81, 90]
    side = "img/MEN/Denim/id_00000081/01_2_side.jpg"  # the first gallery image, 256x176: padded
    expected = resize_images(pad_to_square(pixels[side], value=255)[None], 32)[0]
    assert np.array_equal(s["gallery"].images[0], expected) and expected[:, :2].min() == 255  # white side bars
    assert data.info["n_listed_missing"] == 1 and "unpinned" in data.info["checksums"]


def test_deepfashion_missing_and_password_protected_zip_say_what_to_do(tmp_path):
    ds = DeepFashion(DeepFashionConfig())
    with pytest.raises(Unavailable) as exc:
        ds.load(tmp_path / "none", tmp_path / "c", progress=False)
    assert "list_eval_partition.txt" in str(exc.value) and "password" in str(exc.value)
    folder = tmp_path / "data" / "deepfashion"
    folder.mkdir(parents=True)
    (folder / "list_eval_partition.txt").write_text("1\nimage_name item_id evaluation_status\n"
                                                    "img/A/id_00000001/x.jpg id_00000001 train\n")
    with zipfile.ZipFile(folder / "img.zip", "w") as zf:
        zf.writestr("img/A/id_00000001/x.jpg", _jpeg((8, 8, 3)))
    with open(folder / "img.zip", "r+b") as f:  # set the "encrypted" flag of the first entry, as a password zip has
        raw = bytearray(f.read())
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            pos = raw.find(sig)
            offset = 6 if sig == b"PK\x03\x04" else 8
            raw[pos + offset] |= 0x1
        f.seek(0)
        f.write(raw)
    with pytest.raises(ValueError, match="password-protected"):
        DeepFashion(DeepFashionConfig(resolution=8)).load(tmp_path / "data", tmp_path / "c", progress=False)


def _clips(base, names, frames=3):
    out = {}
    for name in names:
        (base / name).mkdir(parents=True)
        for f in range(frames):
            arr = RNG.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
            Image.fromarray(arr).save(base / name / f"{f:04d}.png")
            out[(name, f)] = arr
    return out


def test_ytbb_vehicles_placed_split_and_clip_classes(tmp_path):
    root = tmp_path / "data"
    train = _clips(root / "ytbb-vehicles" / "bus" / "train", ["b1", "a2"])
    _clips(root / "ytbb-vehicles" / "bus" / "test", ["z9"])
    data = YTBBVehicles(YTBBVehiclesConfig(category="bus", resolution=16)).load(root, tmp_path / "c", progress=False)
    assert len(data.train) == 6 and len(data.test) == 3
    assert len(set(data.train.classes)) == 2 and set(data.test.classes).isdisjoint(data.train.classes)
    assert np.array_equal(data.train.images[0], resize_images(train[("a2", 0)][None], 16)[0])  # name order
    assert data.info["n_clips"] == {"train": 2, "test": 1} and data.info["category"] == "bus"
    with pytest.raises(Unavailable) as exc:  # another category is not there
        YTBBVehicles(YTBBVehiclesConfig(category="truck")).load(root, tmp_path / "c", progress=False)
    assert "Faster R-CNN" in str(exc.value) and "truck" in str(exc.value)


def test_ytbb_vehicles_holds_out_clips_by_hash_when_not_split(tmp_path):
    root = tmp_path / "data"
    _clips(root / "ytbb-vehicles" / "car", [f"clip{k:02d}" for k in range(20)], frames=2)

    def load(seed):
        cfg = YTBBVehiclesConfig(category="car", resolution=8, n_test_clips=4, split_seed=seed)
        return YTBBVehicles(cfg).load(root, tmp_path / f"c{seed}", progress=False)

    a, b, other = load(0), load(0), load(1)
    assert len(np.unique(a.test.classes)) == 4 and len(a.test) == 8 and len(a.train) == 32
    assert np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.test.images, other.test.images)
