
c1
c25
attribute_based:"
category
brandmost_frequent