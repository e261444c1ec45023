"""Built-in dataset plugins. Specs are cheap; each dataset module is imported only when used."""
from __future__ import annotations

from disentbench import DatasetSpec, hookimpl

DATASETS = [
    DatasetSpec(
        name="synth3d",
        target="disentbench_plugins.datasets.synth3d:Synth3D",
        description="Procedurally rendered 3-D objects (coloured ellipsoid composites) under azimuth × "
                    "elevation; exact ground truth, generated offline in seconds; held-out test classes",
        factors=("azimuth", "elevation"),
        source="generated",
    ),
    DatasetSpec(
        name="cars3d",
        target="disentbench_plugins.datasets.cars3d:Cars3D",
        description="Cars3D (Reed et al. 2015): 183 car models × 24 azimuths × 4 elevations; class = car model; "
                    "163 train / 20 test models (LORD)",
        factors=("azimuth", "elevation"),
        source="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
        paper="Gabbay & Hoshen, ICLR 2020, A.2",
    ),
    DatasetSpec(
        name="smallnorb",
        target="disentbench_plugins.datasets.smallnorb:SmallNorb",
        description="smallNORB, one camera; class = category × instance × lighting × elevation, content = azimuth; "
                    "official 25 / 25 toy split (LORD)",
        factors=("azimuth",),
        source="https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
        paper="Gabbay & Hoshen, ICLR 2020, A.2",
    ),
    DatasetSpec(
        name="smallnorb-poses",
        target="disentbench_plugins.datasets.smallnorb:SmallNorbPoses",
        description="smallNORB, one camera; class = category × instance × lighting, content = elevation × azimuth; "
                    "all toys, 10% of images held out (LORD)",
        factors=("elevation", "azimuth"),
        source="https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
        paper="Gabbay & Hoshen, ICLR 2020, A.2",
    ),
    DatasetSpec(
        name="chairs",
        target="disentbench_plugins.datasets.chairs:Chairs",
        description="Rendered chairs (Aubry et al. 2014): 1393 models × 62 views; class = chair model; "
                    "100 models held out",
        factors=("azimuth", "elevation"),
        source="https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar",
        paper="C-S disentanglement, ICLR 2021 submission, appendix B",
    ),
    DatasetSpec(
        name="celeba",
        target="disentbench_plugins.datasets.celeba:CelebA",
        description="CelebA aligned & cropped; class = identity; 1000 identities held out (LORD); "
                    "landmarks as extras; manual placement",
        source="http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (manual)",
        paper="Gabbay & Hoshen, ICLR 2020, A.2",
    ),
    DatasetSpec(
        name="kth",
        target="disentbench_plugins.datasets.kth:KTH",
        description="KTH actions video frames; class = person; 10% of frames held out (LORD); action, scenario, "
                    "video, frame as extras",
        source="http://www.csc.kth.se/cvap/actions/",
        paper="Gabbay & Hoshen, ICLR 2020, A.2",
    ),
    DatasetSpec(
        name="sprites",
        target="disentbench_plugins.datasets.sprites:Sprites",
        description="Sprites (Reed et al. 2015): game characters × animation frames; class = character, "
                    "content = frame; held-out characters (Esser et al.)",
        factors=("frame",),
        source="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
        paper="Esser, Haux & Ommer, ICCV 2019, §4.1",
    ),
    DatasetSpec(
        name="market1501",
        target="disentbench_plugins.datasets.market1501:Market1501",
        description="Market-1501 pedestrians; class = person id; official train / query / gallery; camera ids as "
                    "extras; manual placement",
        source="http://www.liangzheng.com.cn/Project/project_reid.html (manual)",
        paper="Esser, Haux & Ommer, ICCV 2019, §4.4",
    ),
    DatasetSpec(
        name="deepfashion",
        target="disentbench_plugins.datasets.deepfashion:DeepFashion",
        description="DeepFashion In-shop Clothes Retrieval; class = clothing item; official train / query / gallery "
                    "partition; manual placement",
        source="https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html (manual)",
        paper="Esser, Haux & Ommer, ICCV 2019, §4.4",
    ),
    DatasetSpec(
        name="ytbb-vehicles",
        target="disentbench_plugins.datasets.ytbb_vehicles:YTBBVehicles",
        description="YouTube-BoundingBoxes car / bus / truck crops (category option); class = clip; train / test "
                    "clips; built and placed by hand (Xiao et al.'s detection recipe)",
        source="https://research.google.com/youtube-bb/ (manual)",
        paper="Xiao, Liu & Lee 2019, §4",
    ),
]


@hookimpl
def register_datasets(register):
    for spec in DATASETS:
        register(spec)
