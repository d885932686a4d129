"""The post's data: ten people and the name of each one's pet."""

pet_maps = {
    "adam": {"pet_name": "max"},
    "steve": {"pet_name": "sylvester"},
    "michelle": {"pet_name": "fuzzy"},
    "frank": {"pet_name": "pete"},
    "will": {"pet_name": "cat"},
    "natasha": {"pet_name": "tweety"},
    "samantha": {"pet_name": "bob"},
    "peter": {"pet_name": "garfield"},
    "susan": {"pet_name": "zazu"},
    "josh": {"pet_name": "tom"},
}
