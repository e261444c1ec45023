"""Built-in method plugins. Specs are cheap; each method module is imported only when used."""
from __future__ import annotations

from disentbench import MethodSpec, hookimpl

LORD_PAPER = "Gabbay & Hoshen, Demystifying Inter-Class Disentanglement, ICLR 2020"

METHODS: list[MethodSpec] = [
    MethodSpec(
        name="lord",
        target="disentbench_plugins.methods.lord:LORD",
        description="Latent optimisation of shared class and per-image content codes with asymmetric noise, "
                    "AdaIN generator, then amortised encoders",
        supervision="class-supervised",
        paper=LORD_PAPER,
    ),
    MethodSpec(
        name="autoencoder",
        target="disentbench_plugins.methods.autoencoder:Autoencoder",
        description="Plain two-code autoencoder (LORD's encoders and generator), no disentanglement pressure: "
                    "the lower bound",
        supervision="unsupervised",
        paper="baseline (no paper): the shared architecture of LORD, ICLR 2020, reconstruction only",
    ),
    MethodSpec(
        name="drnet",
        target="disentbench_plugins.methods.drnet:DrNet",
        description="Class and content encoders on same-class pairs: cross reconstruction, class-code similarity, "
                    "adversarial scene discriminator whose entropy the content encoder maximises",
        supervision="class-supervised",
        paper="Denton & Birodkar, Unsupervised Learning of Disentangled Representations from Video, NeurIPS 2017",
    ),
    MethodSpec(
        name="cyclevae",
        target="disentbench_plugins.methods.cyclevae:CycleVAE",
        description="VAE over the content code with swapped class codes, plus the reverse cycle "
                    "(sampled content decoded with two class codes must re-encode to the same content)",
        supervision="class-supervised",
        paper="Harsh Jha et al., Disentangling Factors of Variation with Cycle-Consistent Variational "
              "Auto-Encoders, ECCV 2018",
    ),
    MethodSpec(
        name="mlvae",
        target="disentbench_plugins.methods.mlvae:MLVAE",
        description="Multi-level VAE: class posterior of a group of same-class images by product of Gaussians, "
                    "KL on class and content codes",
        supervision="class-supervised",
        paper="Bouchacourt, Tomioka & Nowozin, Multi-Level Variational Autoencoder: Learning Disentangled "
              "Representations from Grouped Observations, AAAI 2018",
    ),
    MethodSpec(
        name="robust",
        target="disentbench_plugins.methods.robust:Robust",
        description="Pose VAE + appearance encoder on same-appearance pairs; MI(pose, appearance) bounded by an "
                    "augmented Lagrangian on classifier T, KL weight adapted by a second classifier T' that "
                    "detects overpowering (ablations: variant=adaptive|variational|adversarial|equal|fixed)",
        supervision="video-pairs",
        paper="Esser, Haux & Ommer, Unsupervised Robust Disentangling of Latent Characteristics for Image "
              "Synthesis, ICCV 2019",
    ),
    MethodSpec(
        name="idpose",
        target="disentbench_plugins.methods.idpose:IDPose",
        description="Triplets from clips (pose reference = nearest neighbour of the target in other clips, frozen "
                    "RotNet AlexNet conv4), ID/pose encoders, Pix2PixHD decoder, disentanglement + "
                    "pixel-verification losses, real/fake and same-identity 2-scale discriminators, clip classifier",
        supervision="video-pairs",
        paper="Xiao, Liu & Lee, Identity from here, Pose from there: Self-supervised Disentanglement and "
              "Generation of Objects using Unlabeled Videos, 2019",
        requires=("weights:rotnet_alexnet",),
    ),
    MethodSpec(
        name="idpose-gtpose",
        target="disentbench_plugins.methods.idpose:IDPoseGTPose",
        description="idpose with pose references retrieved by GROUND-TRUTH pose factors instead of RotNet "
                    "features (pose-supervised variant, not the paper's setting; needs datasets with factors)",
        supervision="pose-supervised",
        paper="variant of Xiao, Liu & Lee 2019 (retrieval by ground-truth pose)",
        requires=("factors",),
    ),
    MethodSpec(
        name="betavae",
        target="disentbench_plugins.methods.betavae:BetaVAE",
        description="VAE with a β-weighted KL term; latent dimensions split after training into class (top-k by "
                    "class η² on the training split) and content codes",
        supervision="unsupervised",
        paper="Higgins et al., beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework, "
              "ICLR 2017",
    ),
    MethodSpec(
        name="factorvae",
        target="disentbench_plugins.methods.factorvae:FactorVAE",
        description="VAE plus a total-correlation penalty from a discriminator on dimension-permuted codes; latent "
                    "dimensions split after training as for betavae",
        supervision="unsupervised",
        paper="Kim & Mnih, Disentangling by Factorising, ICML 2018",
    ),
    MethodSpec(
        name="csfusion",
        target="disentbench_plugins.methods.csfusion:CSFusion",
        description="Latent optimisation of per-image style and content codes; normalised content codes (IN or L2) "
                    "scaled and shifted by style (C-S fusion), reparametric module, information bottleneck, "
                    "instance-discrimination loss; then encoders",
        supervision="unsupervised",
        paper="Rethinking Content and Style: Exploring Bias for Unsupervised Disentanglement, "
              "ICLR 2021 submission (anonymous)",
    ),
    MethodSpec(
        name="szabo",
        target="disentbench_plugins.methods.szabo:Szabo",
        description="Two-code autoencoder on same-class pairs (class codes swapped), with the adversarial loss on "
                    "image pairs: a discriminator tells real same-class pairs from (x_o, G(class of x_o, content of x))",
        supervision="class-supervised",
        paper="Szabo, Hu, Portenier, Zwicker & Favaro, Challenges in Disentangling Independent Factors of "
              "Variation, ICLR Workshops 2018",
    ),
]


@hookimpl
def register_methods(register):
    for spec in METHODS:
        register(spec)
