"""Per-film loss weights beside the class weights; each class keeps its total (`training.train.film_weights`).

`framing` makes framing independent of the class, `series` weighs the `NORMAL2-` normals, `patient` weighs
pneumonia patients rather than their films.
"""
