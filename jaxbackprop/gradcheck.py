def check_gradients(): pass
