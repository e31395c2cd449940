"""Colour maps shared by the viewer and the exports, and the heatmap blending rules.

Tables: 256 RGB entries each, stored as hex strings (6 hex digits per entry) so that the
module needs neither matplotlib nor Qt. They were generated once from the CSV files that
pyqtgraph ships (pyqtgraph/colors/maps), rounded to 8 bits:

- viridis, magma, inferno: matplotlib's perceptually uniform maps by Nathaniel
  J. Smith, Stefan van der Walt and Eric Firing, released under CC0.
- turbo: Google's improved rainbow ("jet"-like) map by Anton Mikhailov, Apache-2.0.
- grey: a linear ramp from black to white, computed here.

Blending rules (one place, so the GUI and every export show the same picture): a pixel is
coloured only where its probability is finite, in 0..1 and at or above the threshold; NaN
(not computed), negative codes (-1 background, -2 failed) and values below the threshold
leave the slide visible.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLORMAPS",
    "DEFAULT_COLORMAP",
    "apply_colormap",
    "blend_heatmap",
    "colormap_lut",
    "heatmap_mask",
    "heatmap_rgba",
    "lut_indices",
]

DEFAULT_COLORMAP = "viridis"

_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e614710634711644713654814674816"
    "6848176948186a481a6c481b6d481c6e481d6f481f7048207148217348237448247548257648267748287848"
    "2979472a7a472c7a472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83"
    "443b84433d84433e85423f854240864241864142874144874045884046883f47883f48893e49893e4a893e4c"
    "8a3d4d8a3d4e8a3c4f8a3c508b3b518b3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d36"
    "5c8d365d8d355e8d355f8d34608d34618d33628d33638d32648e32658e31668e31678e31688e30698e306a8e"
    "2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e2c728e2c738e2b748e2b758e2a768e2a778e2a78"
    "8e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e26828e26828e25838e25848e25858e24"
    "868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d21918c20928c20928c20938c"
    "1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f881fa0881fa1881fa1"
    "871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad8128ae8029"
    "af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8"
    "645cc8635ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517c"
    "d2507fd34e81d34d84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39"
    "a2da37a5db36a8db34aadc32addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e0"
    "20cae11fcde11dd0e11cd2e21bd5e21ad8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51bef"
    "e51cf1e51df4e61ef6e620f8e621fbe723fde725"
)
_MAGMA_HEX = (
    "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a07061c0807"
    "1e0907200a08220b09240c09260d0a290e0b2b100b2d110c2f120d31130d34140e36150e38160f3b180f3d19"
    "103f1a10421c10441d11471e114920114b21114e22115024125325125527125829115a2a115c2c115f2d1161"
    "2f116331116533106734106936106b38106c390f6e3b0f703d0f713f0f72400f74420f75440f764510774710"
    "784910784a10794c117a4e117b4f127b51127c52137c54137d56147d57157e59157e5a167e5c167f5d177f5f"
    "187f601880621980641a80651a80671b80681c816a1c816b1d816d1d816e1e81701f81721f81732081752181"
    "7621817822817922827b23827c23827e24828025828125818326818426818627818827818928818b29818c29"
    "818e2a81902a81912b81932b80942c80962c80982d80992d809b2e7f9c2e7f9e2f7fa02f7fa1307ea3307ea5"
    "317ea6317da8327daa337dab337cad347cae347bb0357bb2357bb3367ab5367ab73779b83779ba3878bc3978"
    "bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071cf4070d0416fd2426fd343"
    "6ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67e24d66e34e65e44f64e55064e75263e8"
    "5362e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5ef05f5ef1605df2625df2645cf3655cf4675cf4695c"
    "f56b5cf66c5cf66e5cf7705cf7725cf8745cf8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb85"
    "60fb8761fc8961fc8a62fc8c63fc8e64fc9065fd9266fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfe"
    "a16efea36ffea571fea772fea973feaa74feac76feae77feb078feb27afeb47bfeb67cfeb77efeb97ffebb81"
    "febd82febf84fec185fec287fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597fed7"
    "99fed89afdda9cfddc9efddea0fde0a1fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecaefceeb0fcf0b2fc"
    "f2b4fcf4b6fcf6b8fcf7b9fcf9bbfcfbbdfcfdbf"
)
_INFERNO_HEX = (
    "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d0906"
    "1f0a07220b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c"
    "0c431e0c451f0c48210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f"
    "3609613809623909633b09643d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d"
    "6c4f0d6c510e6c520e6d540f6d550f6d57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65"
    "156e67166e69166e6a176e6c186e6d186e6f196e71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d"
    "7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a8a226a8c23698d23698f24699025689225689326"
    "679526679727669827669a28659b29649d29649f2a63a02a63a22b62a32c61a52c60a62d60a82e5fa92e5eab"
    "2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557b93556ba3655bc3754bd3853bf3952c03a51"
    "c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545d24644d34743d448"
    "42d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933e45a31e5"
    "5c30e65d2fe75e2ee8602de9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711f"
    "f1731df2741cf3761bf37819f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b"
    "0bf98c0af98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afc"
    "a60cfca80dfcaa0ffcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228"
    "fac42afac62df9c72ff9c932f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df"
    "53f4e156f3e35af3e55df2e661f2e865f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4"
    "f88ef5f992f6fa96f8fb9af9fc9dfafda1fcffa4"
)
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b"
    "973f3e9c4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d646"
    "64da4666dd4669e0466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb"
    "458afc458cfd448ffe4391fe4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833ad"
    "f731aff52fb2f42eb4f22cb7f02ab9ee28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81b"
    "d0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc518ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b2"
    "1fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b32f29835f39438f4913cf58e3ff68a43f78746f8"
    "844af8804ef97d52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd666dfe6271fe5f75fe5c79fe597dff5680"
    "ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3da4fc3ca7fc3aa9fb39acfb38"
    "affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34cdec34d0ea34d2e9"
    "35d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13aeecf3aef"
    "cd3af1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35"
    "fdac34fea933fea732fea431fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc84"
    "23fb8122fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef"
    "5811ed5510ec530feb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907"
    "d83706d63506d43305d23105d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e"
    "02b71d02b41b01b21a01af1801ac1701a91601a71401a41301a112019e10019b0f01980e01950d01920b018e"
    "0a018b09028808028507028106027e05027a0403"
)


def _table(hex_text: str) -> np.ndarray:
    lut = np.frombuffer(bytes.fromhex(hex_text), np.uint8).reshape(256, 3).copy()
    lut.setflags(write=False)
    return lut


def _grey() -> np.ndarray:
    lut = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    lut.setflags(write=False)
    return lut


# name -> read-only (256, 3) uint8 lookup table; entry i is the colour of probability i / 255.
COLORMAPS: dict[str, np.ndarray] = {
    "viridis": _table(_VIRIDIS_HEX),
    "magma": _table(_MAGMA_HEX),
    "inferno": _table(_INFERNO_HEX),
    "turbo": _table(_TURBO_HEX),
    "grey": _grey(),
}


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 table of name; ValueError listing the known names."""
    try:
        return COLORMAPS[name]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}") from None


def lut_indices(values01: np.ndarray) -> np.ndarray:
    """Table index (0..255) of probabilities; NaN and out-of-range values are clipped."""
    v = np.nan_to_num(np.asarray(values01, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.intp)


def apply_colormap(values01: np.ndarray, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Probabilities (any shape, 0..1) -> uint8 RGB of shape values01.shape + (3,)."""
    return colormap_lut(name)[lut_indices(values01)]


def heatmap_mask(prob: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Where the heatmap is drawn: finite probabilities in 0..1 at or above threshold.

    Encoded states (NaN not computed, -1 background, -2 failed) are never drawn.
    """
    p = np.asarray(prob, np.float32)
    with np.errstate(invalid="ignore"):
        return np.isfinite(p) & (p >= 0.0) & (p <= 1.0) & (p >= threshold)


def heatmap_rgba(prob: np.ndarray, cmap: str = DEFAULT_COLORMAP, opacity: float = 1.0,
                 threshold: float = 0.0) -> np.ndarray:
    """The heatmap as uint8 RGBA (straight alpha): transparent where heatmap_mask is false."""
    mask = heatmap_mask(prob, threshold)
    out = np.zeros(mask.shape + (4,), np.uint8)
    out[..., :3] = apply_colormap(np.where(mask, prob, 0.0), cmap)
    out[..., 3] = np.where(mask, int(round(np.clip(opacity, 0.0, 1.0) * 255)), 0)
    return out


def blend_heatmap(rgb_base: np.ndarray, prob: np.ndarray, cmap: str = DEFAULT_COLORMAP,
                  opacity: float = 0.5, threshold: float = 0.0) -> np.ndarray:
    """rgb_base (H, W, 3 uint8) with the heatmap of prob (H, W) blended over it.

    opacity 0..1 is the heatmap's weight where it is drawn; elsewhere (see
    heatmap_mask) the base shows unchanged. Returns a new uint8 array. Integer maths
    with weights in 1/256: exports blend hundreds of megapixels.
    """
    base = np.asarray(rgb_base)
    if base.shape[:2] != np.shape(prob) or base.ndim != 3 or base.shape[2] < 3:
        raise ValueError(f"base {base.shape} and probabilities {np.shape(prob)} do not match")
    out = np.array(base[..., :3], np.uint8, copy=True)
    mask = heatmap_mask(prob, threshold)
    if not mask.any():
        return out
    a = int(round(float(np.clip(opacity, 0.0, 1.0)) * 256))
    colour = colormap_lut(cmap)[lut_indices(np.asarray(prob)[mask])].astype(np.uint16)
    under = out[mask].astype(np.uint16)
    out[mask] = ((colour * a + under * (256 - a) + 128) >> 8).astype(np.uint8)
    return out
