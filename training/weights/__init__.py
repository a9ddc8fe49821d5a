"""Per-film loss weights other than the plain class weights (`training.train.film_weights` applies them).

`framing` replaces the class weights with inverse-propensity weights, so that framing cannot predict the
class; `series` weighs the `NORMAL2-` normals and `patient` the pneumonia patients rather than their films,
each class keeping its total weight.
"""
